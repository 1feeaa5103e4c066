/* Kesher: the campaign editor. The A/B test's settings and the variants after A show only while
   "A/B test" is ticked; without this file they always show (and only A is saved unless it is ticked).
   The live audience count and the preview are plain HTMX. No dependencies. */
"use strict";

(function () {
  var toggle = document.getElementById("f-ab");
  if (!toggle) { return; }
  var form = toggle.form;

  function show() {
    var parts = form.querySelectorAll(".ab-only");
    // style, not the hidden attribute: the page's grid and flex rules would override it.
    for (var i = 0; i < parts.length; i++) { parts[i].style.display = toggle.checked ? "" : "none"; }
  }

  toggle.addEventListener("change", show);
  show();
})();
