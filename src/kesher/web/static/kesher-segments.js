/* Kesher: the segment rule builder. The rule lives as JSON in the form's textarea (the API's rule
   language); this file draws it as nested groups and conditions, keeps the JSON in step, asks the
   server how many contacts match as you edit, and marks the condition a problem points at.
   Without this file the textarea is the form. No dependencies. */
"use strict";

(function () {
  var root = document.getElementById("builder");
  if (!root) { return; }
  var V = JSON.parse(document.getElementById("builder-vocabulary").textContent);
  var T = V.text;
  var textarea = document.getElementById("rule-json");
  var form = textarea.form;
  var jsonError = document.getElementById("rule-json-error");
  var countBox = document.getElementById("preview-count");
  var sampleBox = document.getElementById("preview-sample");
  var csrf = form.querySelector("input[name=csrf_token]").value;
  var segmentId = root.getAttribute("data-segment-id") || "";
  var KINDS = ["field", "event", "stat", "list", "tag", "segment", "consent", "campaigns", "stage", "replenishment_due"];
  var PRESENCE = ["is_set", "is_not_set"];
  var TEXT_PROPS = ["campaign_id", "url", "category", "sku", "product", "name", "order_id", "title", "form_id",
                    "currency", "cart_id", "referrer", "message_id", "segment_id"];
  var lastId = 0;
  var tree = null;
  var problem = null;  // {path, message} from the server
  var timer = null;
  var asked = 0;

  // The rule as a tree of nodes -----------------------------------------------------------------

  function copy(value) { return JSON.parse(JSON.stringify(value)); }

  function leafKind(data) {
    for (var i = 0; i < KINDS.length; i++) { if (Object.prototype.hasOwnProperty.call(data, KINDS[i])) { return KINDS[i]; } }
    return "field";
  }

  function group(mode, children) { return {id: ++lastId, group: true, mode: mode, not: false, children: children}; }
  function leaf(data) { return {id: ++lastId, group: false, not: false, data: data}; }

  function fromJson(json) {
    if (json && Array.isArray(json.all)) { return group("all", json.all.map(fromJson)); }
    if (json && Array.isArray(json.any)) { return group("any", json.any.map(fromJson)); }
    if (json && Object.prototype.hasOwnProperty.call(json, "not")) {
      var inner = fromJson(json.not);
      inner.not = !inner.not;
      return inner;
    }
    return leaf(copy(json || {}));
  }

  function rootFrom(json) {
    var node = fromJson(json);
    return node.group && !node.not ? node : group("all", [node]);
  }

  // Each node remembers the JSON paths it was sent under, so a problem's path finds it again.
  function toJson(node, path) {
    node.paths = [path];
    var inner = path;
    if (node.not) { inner = path + ".not"; node.paths.push(inner); }
    var out;
    if (node.group) {
      out = {};
      out[node.mode] = node.children.map(function (child, i) { return toJson(child, inner + "." + node.mode + "[" + i + "]"); });
    } else {
      out = copy(node.data);
    }
    return node.not ? {not: out} : out;
  }

  function ruleJson() {
    if (tree.mode === "all" && tree.children.length === 1) {  // one condition is saved as itself
      tree.paths = [];
      return toJson(tree.children[0], "$");
    }
    return toJson(tree, "$");
  }

  function walk(node, visit) {
    visit(node);
    if (node.group) { node.children.forEach(function (child) { walk(child, visit); }); }
  }

  function blank(value) { return value === "" || value === null || value === undefined || (Array.isArray(value) && !value.length); }

  function comparisonIncomplete(target) { return PRESENCE.indexOf(target.op) < 0 && blank(target.value); }

  function incomplete(node) {
    var d = node.data;
    switch (leafKind(d)) {
      case "field": case "stat": return comparisonIncomplete(d);
      case "event":
        return blank(d.event) || (d.count && blank(d.count.value)) || (d.sum && (blank(d.sum.value) || blank(d.sum.prop))) ||
          (d.within_days !== undefined && blank(d.within_days)) ||
          (d.between !== undefined && (blank(d.between[0]) || blank(d.between[1]))) ||
          (d.where || []).some(function (f) { return blank(f.prop) || comparisonIncomplete(f); });
      case "list": return blank(d.list);
      case "tag": return blank(d.tag);
      case "segment": return blank(d.segment);
      case "campaigns": return blank(d.campaigns) || blank(d.value);
      case "stage": return blank(d.stage);
      case "replenishment_due": return blank(d.replenishment_due);
      default: return false;
    }
  }

  function newLeaf(kind) {
    var first = function (options) { return options.length ? options[0][0] : null; };
    return leaf({
      field: {field: "city", op: "eq", value: ""},
      event: {event: "purchase"},
      stat: {stat: "total_revenue", op: "gte", value: ""},
      list: {list: first(V.lists)},
      tag: {tag: first(V.tags)},
      segment: {segment: first(V.segments)},
      consent: {consent: "email", status: "granted"},
      campaigns: {campaigns: 3, action: "clicked", op: "eq", value: 0},
      stage: {stage: "active"},
      replenishment_due: {replenishment_due: 5}
    }[kind]);
  }

  // Small DOM helpers -----------------------------------------------------------------------------

  function make(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") { node.textContent = attrs.text; } else if (attrs[name] !== null && attrs[name] !== undefined) { node.setAttribute(name, attrs[name]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }

  function pairs(object) { return Object.keys(object).map(function (key) { return [key, object[key]]; }); }

  function control(node, key) { return {id: "b" + node.id + "-" + key.replace(/[^\w-]/g, "_"), "data-key": key}; }

  function choose(node, key, label, options, value, onChange) {
    var box = make("select", Object.assign(control(node, key), {"aria-label": label}));
    var found = false;
    options.forEach(function (option) {
      var item = make("option", {value: String(option[0]), text: option[1]});
      if (String(option[0]) === String(value)) { item.selected = true; found = true; }
      box.appendChild(item);
    });
    if (!found && !blank(value)) { box.insertBefore(make("option", {value: String(value), text: String(value), selected: "selected"}), box.firstChild); }
    box.addEventListener("change", function () { onChange(box.value); });
    return box;
  }

  function type(node, key, label, kind, value, onInput, extra) {
    var attrs = Object.assign(control(node, key), {"aria-label": label, type: kind, value: blank(value) ? "" : String(value)}, extra || {});
    if (kind === "number") { attrs.step = "any"; attrs.dir = "ltr"; attrs.inputmode = "decimal"; }
    if (kind === "date") { attrs.dir = "ltr"; }
    var box = make("input", attrs);
    box.addEventListener("input", function () { onInput(box.value); changed(); });
    return box;
  }

  function number(text) { return text.trim() === "" ? "" : Number(text); }
  function words(text) { return make("span", {"class": "b-words", text: text}); }

  // Comparisons: an operator and the value it needs ------------------------------------------------

  function shape(op) {
    if (PRESENCE.indexOf(op) >= 0) { return "none"; }
    if (op === "within_last_days" || op === "more_than_days_ago") { return "days"; }
    if (op === "in_month") { return "month"; }
    if (op === "top_percent") { return "percent"; }
    if (op === "in" || op === "not_in") { return "list"; }
    return "one";
  }

  function startValue(def, op) {
    return {none: undefined, days: 30, month: 0, percent: 10, list: [],
            one: def.type === "boolean" ? true : (def.choices && def.choices.length ? def.choices[0][0] : "")}[shape(op)];
  }

  function opsFor(def, kind, current) {
    var ops = (kind === "property" ? V.propertyOps : V.opsByType[def.type] || V.opsByType.text).slice();
    if (kind === "stat" && def.type === "number") { ops.push("top_percent"); }
    if (current && ops.indexOf(current) < 0) { ops.push(current); }
    return ops;
  }

  function typed(def, text) {
    if (def.type === "number") { return number(text); }
    if (def.type === "property") {
      var clean = text.trim();
      return TEXT_PROPS.indexOf(def.filter.prop) < 0 && /^-?\d+(\.\d+)?$/.test(clean) ? Number(clean) : text;
    }
    return text;
  }

  // `target` holds op and value: a field or stat condition, or one property filter of an event.
  function comparison(node, target, def, kind, prefix, row) {
    var ops = opsFor(def, kind, target.op);
    row.appendChild(choose(node, prefix + "op", T.comparison, ops.map(function (op) { return [op, V.ops[op] || op]; }), target.op, function (op) {
      var before = shape(target.op);
      target.op = op;
      if (shape(op) !== before) {
        var start = startValue(def, op);
        if (start === undefined) { delete target.value; } else { target.value = start; }
      }
      redraw(node, prefix + "op");
    }));
    var key = prefix + "value";
    var set = function (value) { target.value = value; };
    switch (shape(target.op)) {
      case "none": return;
      case "days":
        row.appendChild(type(node, key, T.days, "number", target.value, function (v) { set(number(v)); }, {min: "0", "class": "b-short"}));
        row.appendChild(words(T.days));
        return;
      case "percent":
        row.appendChild(type(node, key, T.percent, "number", target.value, function (v) { set(number(v)); }, {min: "0", max: "100", "class": "b-short"}));
        row.appendChild(words("%"));
        return;
      case "month":
        row.appendChild(choose(node, key, T.value, [[0, T.currentMonth]].concat(V.months.map(function (name, i) { return [i + 1, name]; })),
          target.value, function (v) { set(Number(v)); changed(); }));
        return;
      case "list":
        row.appendChild(type(node, key, T.values, "text", (target.value || []).join(", "), function (v) {
          set(v.split(",").map(function (part) { return part.trim(); }).filter(function (part) { return part !== ""; })
            .map(function (part) { return typed(def, part); }));
        }, {placeholder: T.values, dir: "auto"}));
        return;
    }
    if (def.type === "boolean") {
      row.appendChild(choose(node, key, T.value, [["true", T.yes], ["false", T.no]], String(target.value), function (v) { set(v === "true"); changed(); }));
    } else if (def.choices && def.choices.length) {
      row.appendChild(choose(node, key, T.value, def.choices, target.value, function (v) { set(v); changed(); }));
    } else if (def.type === "date" || def.type === "datetime") {
      row.appendChild(type(node, key, T.value, "date", target.value, function (v) { set(v); }));
    } else if (def.type === "number") {
      if (def.money) { row.appendChild(words("₪")); }
      row.appendChild(type(node, key, T.value, "number", target.value, function (v) { set(number(v)); }, {"class": "b-short"}));
    } else {
      row.appendChild(type(node, key, T.value, "text", target.value, function (v) { set(typed(def, v)); }, {dir: "auto"}));
    }
  }

  // One editor per kind of condition -----------------------------------------------------------------

  function fieldDef(key) {
    var all = V.fields.concat(V.customFields);
    for (var i = 0; i < all.length; i++) { if (all[i].key === key) { return all[i]; } }
    return {key: key, label: key, type: "text", choices: []};
  }

  function statDef(key) {
    for (var i = 0; i < V.stats.length; i++) { if (V.stats[i].key === key) { return V.stats[i]; } }
    return {key: key, label: key, type: "number", choices: []};
  }

  function retarget(node, def, kind) {
    var d = node.data;
    var ops = opsFor(def, kind, null);
    if (ops.indexOf(d.op) < 0) { d.op = ops[0]; }
    var start = startValue(def, d.op);
    if (start === undefined) { delete d.value; } else { d.value = start; }
  }

  var editors = {
    field: function (node, row) {
      var d = node.data;
      var box = make("select", Object.assign(control(node, "field"), {"aria-label": T.field}));
      [[T.contactFields, V.fields], [T.customFields, V.customFields]].forEach(function (part) {
        if (!part[1].length) { return; }
        var optgroup = make("optgroup", {label: part[0]});
        part[1].forEach(function (f) { optgroup.appendChild(make("option", {value: f.key, text: f.label, selected: f.key === d.field ? "selected" : null})); });
        box.appendChild(optgroup);
      });
      if (!V.fields.concat(V.customFields).some(function (f) { return f.key === d.field; })) {
        box.insertBefore(make("option", {value: d.field, text: d.field, selected: "selected"}), box.firstChild);
      }
      box.addEventListener("change", function () { d.field = box.value; retarget(node, fieldDef(d.field), "field"); redraw(node, "field"); });
      row.appendChild(box);
      comparison(node, d, fieldDef(d.field), "field", "", row);
    },
    stat: function (node, row) {
      var d = node.data;
      row.appendChild(choose(node, "stat", T.stat, V.stats.map(function (s) { return [s.key, s.label]; }), d.stat, function (v) {
        d.stat = v;
        retarget(node, statDef(v), "stat");
        redraw(node, "stat");
      }));
      comparison(node, d, statDef(d.stat), "stat", "", row);
    },
    event: function (node, row, box) {
      var d = node.data;
      var known = Object.prototype.hasOwnProperty.call(V.events, d.event);
      row.appendChild(choose(node, "event", T.event, pairs(V.events).concat([["", T.otherEvent]]), known ? d.event : "", function (v) {
        d.event = v;
        redraw(node, "event");
      }));
      if (!known) {
        row.appendChild(type(node, "event_name", T.eventName, "text", d.event, function (v) { d.event = v.trim(); }, {dir: "ltr", placeholder: "custom:quiz_done"}));
      }
      var measure = d.sum ? "sum" : (d.count ? "count" : "once");
      row.appendChild(choose(node, "measure", T.measure, [["once", T.atLeastOnce], ["count", T.times], ["sum", T.total]], measure, function (v) {
        delete d.count;
        delete d.sum;
        if (v === "count") { d.count = {op: "gte", value: 1}; }
        if (v === "sum") { d.sum = {prop: "total", op: "gte", value: ""}; }
        redraw(node, "measure");
      }));
      if (d.count) {
        row.appendChild(choose(node, "count.op", T.measure, pairs(V.countOps), d.count.op, function (v) { d.count.op = v; changed(); }));
        row.appendChild(type(node, "count.value", T.times, "number", d.count.value, function (v) { d.count.value = number(v); }, {min: "0", "class": "b-short"}));
      }
      if (d.sum) {
        row.appendChild(type(node, "sum.prop", T.property, "text", d.sum.prop, function (v) { d.sum.prop = v.trim(); }, {dir: "ltr", list: "b-properties", "class": "b-short"}));
        row.appendChild(choose(node, "sum.op", T.measure, pairs(V.countOps), d.sum.op, function (v) { d.sum.op = v; changed(); }));
        row.appendChild(type(node, "sum.value", T.value, "number", d.sum.value, function (v) { d.sum.value = number(v); }, {"class": "b-short"}));
      }
      var when = d.between ? "between" : (d.within_days !== undefined ? "days" : "ever");
      row.appendChild(choose(node, "window", T.window, [["ever", T.ever], ["days", T.withinDays], ["between", T.between]], when, function (v) {
        delete d.within_days;
        delete d.between;
        if (v === "days") { d.within_days = 30; }
        if (v === "between") { d.between = ["", ""]; }
        redraw(node, "window");
      }));
      if (d.within_days !== undefined) {
        row.appendChild(type(node, "within_days", T.days, "number", d.within_days, function (v) { d.within_days = number(v); }, {min: "0", "class": "b-short"}));
        row.appendChild(words(T.days));
      }
      if (d.between) {
        row.appendChild(type(node, "between[0]", T.from, "date", String(d.between[0]).slice(0, 10), function (v) { d.between[0] = v; }));
        row.appendChild(type(node, "between[1]", T.to, "date", String(d.between[1]).slice(0, 10), function (v) { d.between[1] = v; }));
      }
      (d.where || []).forEach(function (flt, i) {
        var line = make("div", {"class": "b-row b-filter"});
        var prefix = "where[" + i + "].";
        line.appendChild(type(node, prefix + "prop", T.property, "text", flt.prop, function (v) { flt.prop = v.trim(); }, {dir: "ltr", list: "b-properties", placeholder: T.property}));
        comparison(node, flt, {type: "property", filter: flt}, "property", prefix, line);
        line.appendChild(make("button", {type: "button", "class": "b-remove", "aria-label": T.remove, title: T.remove, text: "×"}));
        line.lastChild.addEventListener("click", function () {
          d.where.splice(i, 1);
          if (!d.where.length) { delete d.where; }
          redraw(node, null);
        });
        box.appendChild(line);
      });
      var add = make("button", {type: "button", "class": "button small ghost b-add-filter", text: "+ " + T.addFilter});
      add.addEventListener("click", function () {
        d.where = (d.where || []).concat([{prop: "", op: "eq", value: ""}]);
        redraw(node, "where[" + (d.where.length - 1) + "].prop");
      });
      box.appendChild(add);
    },
    list: function (node, row) { pick(node, row, "list", V.lists, T.list); },
    tag: function (node, row) { pick(node, row, "tag", V.tags, T.tag); },
    segment: function (node, row) { pick(node, row, "segment", V.segments, T.segment); },
    consent: function (node, row) {
      var d = node.data;
      row.appendChild(choose(node, "consent", T.channel, pairs(V.channels), d.consent, function (v) { d.consent = v; changed(); }));
      row.appendChild(choose(node, "status", T.status, pairs(V.statuses), d.status || "granted", function (v) { d.status = v; changed(); }));
    },
    campaigns: function (node, row) {
      var d = node.data;
      row.appendChild(words(T.ofLast));
      row.appendChild(type(node, "campaigns", T.campaignsReceived, "number", d.campaigns, function (v) { d.campaigns = number(v); }, {min: "1", max: "100", "class": "b-short"}));
      row.appendChild(words(T.campaignsReceived));
      row.appendChild(choose(node, "action", T.measure, [["opened", T.opened], ["clicked", T.clicked]], d.action || "clicked", function (v) { d.action = v; changed(); }));
      row.appendChild(choose(node, "op", T.measure, pairs(V.countOps), d.op || "eq", function (v) { d.op = v; changed(); }));
      row.appendChild(type(node, "value", T.value, "number", d.value === undefined ? 0 : d.value, function (v) { d.value = number(v); }, {min: "0", "class": "b-short"}));
    },
    stage: function (node, row) {
      var d = node.data;
      var chosen = Array.isArray(d.stage) ? d.stage : [d.stage];
      var set = make("fieldset", {"class": "b-checks"}, [make("legend", {"class": "visually-hidden", text: T.stages})]);
      pairs(V.stages).forEach(function (stage) {
        var box = make("input", Object.assign(control(node, "stage-" + stage[0]), {type: "checkbox", value: stage[0]}));
        box.checked = chosen.indexOf(stage[0]) >= 0;
        box.addEventListener("change", function () {
          var now = Array.prototype.filter.call(set.querySelectorAll("input"), function (b) { return b.checked; }).map(function (b) { return b.value; });
          d.stage = now.length === 1 ? now[0] : now;
          changed();
        });
        set.appendChild(make("label", {}, [box, document.createTextNode(" " + stage[1])]));
      });
      set.setAttribute("data-key", "stage");
      row.appendChild(set);
    },
    replenishment_due: function (node, row) {
      var d = node.data;
      row.appendChild(choose(node, "category", T.category, [["", T.anyCategory]].concat(V.categories), d.category || "", function (v) {
        if (v) { d.category = v; } else { delete d.category; }
        changed();
      }));
      row.appendChild(words(T.runsOutWithin));
      row.appendChild(type(node, "replenishment_due", T.days, "number", d.replenishment_due, function (v) { d.replenishment_due = number(v); }, {min: "0", max: "365", "class": "b-short"}));
    }
  };

  function pick(node, row, kind, options, label) {
    var d = node.data;
    if (!options.length && blank(d[kind])) {
      row.appendChild(words(T.none));
      return;
    }
    var value = d[kind];
    options.forEach(function (option) { if (option[1] === value) { value = option[0]; d[kind] = option[0]; } });
    row.appendChild(choose(node, kind, label, options, value, function (v) { d[kind] = /^\d+$/.test(v) ? Number(v) : v; changed(); }));
  }

  // Drawing ---------------------------------------------------------------------------------------------

  function negate(node) {
    var box = make("input", Object.assign(control(node, "not"), {type: "checkbox"}));
    box.checked = node.not;
    box.addEventListener("change", function () { node.not = box.checked; redraw(node, "not"); });
    return make("label", {"class": "b-not", title: T.negate}, [box, document.createTextNode(" " + T.not)]);
  }

  function removeButton(node, parent) {
    var button = make("button", Object.assign(control(node, "remove"), {type: "button", "class": "b-remove", "aria-label": T.remove, title: T.remove, text: "×"}));
    button.addEventListener("click", function () {
      parent.children.splice(parent.children.indexOf(node), 1);
      redraw(parent, "add-condition");
    });
    return button;
  }

  function drawLeaf(node, parent) {
    var kind = leafKind(node.data);
    var box = make("div", {"class": "b-leaf" + (node.not ? " b-negated" : ""), "data-node": node.id, role: "group", "aria-label": V.kinds[kind]});
    var row = make("div", {"class": "b-row"});
    row.appendChild(choose(node, "kind", T.conditionKind, pairs(V.kinds), kind, function (v) {
      node.data = newLeaf(v).data;
      redraw(node, "kind");
    }));
    box.appendChild(row);
    editors[kind](node, row, box);
    row.appendChild(negate(node));
    row.appendChild(removeButton(node, parent));
    box.appendChild(make("p", {"class": "b-error", id: "b" + node.id + "-error", role: "alert", hidden: "hidden"}));
    return box;
  }

  function drawGroup(node, parent) {
    var box = make("div", {"class": "b-group" + (node.not ? " b-negated" : "") + (parent ? "" : " b-root"), "data-node": node.id, role: "group", "aria-label": T.group});
    var head = make("div", {"class": "b-row b-group-head"});
    head.appendChild(choose(node, "mode", T.groupMode, [["all", T.all], ["any", T.any]], node.mode, function (v) { node.mode = v; changed(); }));
    if (parent) {
      head.appendChild(negate(node));
      head.appendChild(removeButton(node, parent));
    }
    box.appendChild(head);
    var children = make("div", {"class": "b-children"});
    node.children.forEach(function (child) { children.appendChild(draw(child, node)); });
    if (!node.children.length) { children.appendChild(make("p", {"class": "muted b-empty", text: T.empty})); }
    box.appendChild(children);
    var actions = make("div", {"class": "b-row b-actions"});
    var kind = choose(node, "add-kind", T.conditionKind, pairs(V.kinds), "field", function () {});
    var addCondition = make("button", Object.assign(control(node, "add-condition"), {type: "button", "class": "button small", text: "+ " + T.addCondition}));
    addCondition.addEventListener("click", function () {
      var added = newLeaf(kind.value);
      node.children.push(added);
      redraw(added, "kind");
    });
    var addGroup = make("button", Object.assign(control(node, "add-group"), {type: "button", "class": "button small ghost", text: "+ " + T.addGroup}));
    addGroup.addEventListener("click", function () {
      var added = group("any", [newLeaf("field")]);
      node.children.push(added);
      redraw(added, "mode");
    });
    [kind, addCondition, addGroup].forEach(function (part) { actions.appendChild(part); });
    box.appendChild(actions);
    box.appendChild(make("p", {"class": "b-error", id: "b" + node.id + "-error", role: "alert", hidden: "hidden"}));
    return box;
  }

  function draw(node, parent) { return node.group ? drawGroup(node, parent) : drawLeaf(node, parent); }

  // Redraw everything, then put the focus back where it was (or on `focusKey` of `node`).
  function redraw(node, focusKey) {
    var active = document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : null;
    root.textContent = "";
    root.appendChild(draw(tree, null));
    root.appendChild(make("datalist", {id: "b-properties"}, V.properties.map(function (p) { return make("option", {value: p}); })));
    var target = (node && focusKey && document.getElementById("b" + node.id + "-" + focusKey.replace(/[^\w-]/g, "_"))) ||
      (active && document.getElementById(active));
    if (target) { target.focus(); }
    changed();
  }

  // The problem the server found, next to the condition it names -----------------------------------------

  function pathStarts(path, prefix) {
    return path === prefix || path.indexOf(prefix + ".") === 0 || path.indexOf(prefix + "[") === 0;
  }

  function showProblem() {
    Array.prototype.forEach.call(root.querySelectorAll(".b-error"), function (p) { p.hidden = true; p.textContent = ""; });
    Array.prototype.forEach.call(root.querySelectorAll("[aria-invalid]"), function (c) { c.removeAttribute("aria-invalid"); c.removeAttribute("aria-describedby"); });
    Array.prototype.forEach.call(root.querySelectorAll(".b-has-error"), function (b) { b.classList.remove("b-has-error"); });
    if (!problem) { return; }
    var best = null;
    var bestPath = "";
    walk(tree, function (node) {
      (node.paths || []).forEach(function (p) {
        if (pathStarts(problem.path, p) && p.length >= bestPath.length) { best = node; bestPath = p; }
      });
    });
    var target = best || tree;
    var box = root.querySelector('[data-node="' + target.id + '"]');
    if (!box) { return; }
    box.classList.add("b-has-error");
    var message = document.getElementById("b" + target.id + "-error");
    message.textContent = problem.message;
    message.hidden = false;
    var rest = best ? problem.path.slice(bestPath.length).replace(/^\./, "") : "";
    if (rest.indexOf("not.") === 0) { rest = rest.slice(4); }
    var controls = box.querySelectorAll("[data-key]");
    for (var i = 0; rest && i < controls.length; i++) {
      var key = controls[i].getAttribute("data-key");
      if (key === rest || key.indexOf(rest + "[") === 0 || rest.indexOf(key + ".") === 0 || rest.indexOf(key + "[") === 0) {
        controls[i].setAttribute("aria-invalid", "true");
        controls[i].setAttribute("aria-describedby", message.id);
        break;
      }
    }
  }

  // The count as you edit --------------------------------------------------------------------------

  function hasLeaves(node) { return node.group ? node.children.some(hasLeaves) : true; }

  function changed() {
    var json = ruleJson();
    textarea.value = JSON.stringify(json);
    jsonError.hidden = true;
    showProblem();
    clearTimeout(timer);
    timer = setTimeout(preview, 400);
  }

  // `state`: "busy" while counting, "note" for a hint instead of a count.
  function say(text, state) {
    countBox.textContent = text;
    countBox.className = "preview-count" + (state ? " " + state : "");
  }

  function preview() {
    var leaves = [];
    walk(tree, function (node) { if (!node.group) { leaves.push(node); } });
    sampleBox.textContent = "";
    if (!hasLeaves(tree)) { say(T.empty, "note"); return; }
    if (leaves.some(incomplete)) { say(T.incomplete, "note"); return; }
    var mine = ++asked;
    say(T.counting, "busy");
    var body = new URLSearchParams();
    body.set("rule", textarea.value);
    body.set("segment_id", segmentId);
    fetch("/segments/preview", {method: "POST", body: body, headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.json();
      })
      .then(function (answer) {
        if (mine !== asked) { return; }
        if (!answer.ok) {
          problem = {path: answer.path, message: answer.message};
          showProblem();
          say(T.invalid, "note");
          return;
        }
        problem = null;
        showProblem();
        say(answer.text);
        if (answer.sample.length) {
          sampleBox.appendChild(make("li", {"class": "muted", text: T.sample}));
          answer.sample.forEach(function (contact) {
            sampleBox.appendChild(make("li", {}, [make("a", {href: contact.url, text: contact.name, dir: "auto"})]));
          });
        }
      })
      .catch(function () { if (mine === asked) { say(T.failed, "note"); } });
  }

  // Start --------------------------------------------------------------------------------------------

  function load(text) {
    tree = rootFrom(JSON.parse(text));
    redraw(null, null);
  }

  textarea.addEventListener("change", function () {
    try {
      load(textarea.value);
    } catch (error) {
      jsonError.textContent = T.badJson;
      jsonError.hidden = false;
    }
  });

  // Enter in a condition's box would send the whole form: it only moves on.
  root.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.tagName === "INPUT") { event.preventDefault(); }
  });

  var given = root.getAttribute("data-error-path");
  try {
    load(textarea.value || '{"all": []}');
  } catch (error) {
    tree = group("all", []);
    redraw(null, null);
    jsonError.textContent = T.badJson;
    jsonError.hidden = false;
    return;
  }
  if (given) {
    problem = {path: given, message: root.getAttribute("data-error-message")};
    showProblem();
  }
  textarea.closest("details").open = false;
}());
