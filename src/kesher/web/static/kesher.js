/* Kesher: the few behaviours plain HTML lacks. Everything works without this file. */
"use strict";

// <form data-confirm="..."> asks before it submits (deleting a contact, a list, a tag).
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// A partial request that lands on the login page (the session ended) reloads the whole page there.
document.addEventListener("htmx:beforeSwap", function (event) {
  var url = event.detail.xhr.responseURL;
  if (url && new URL(url).pathname === "/login") {
    event.detail.shouldSwap = false;
    window.location.assign(url);
  }
});

// Mark the results busy while HTMX fetches them, so screen readers wait for the new rows.
document.addEventListener("htmx:beforeRequest", function (event) {
  var results = document.getElementById("results");
  if (results && event.detail.target === results) { results.setAttribute("aria-busy", "true"); }
});
