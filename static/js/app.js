/* Heroshhi dashboard: small progressive enhancements. Every page works without
   this file; it adds the phone-sized menu toggle, "select all" on the leads list,
   tag colours, and keeps the conversation scrolled to its newest message.
   No inline scripts or styles: the Content-Security-Policy forbids them. */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var HEX = /^#[0-9a-fA-F]{6}$/;

  function colourTags(root) {
    root.querySelectorAll("[data-color]").forEach(function (el) {
      var colour = el.getAttribute("data-color");
      if (HEX.test(colour)) {
        el.style.setProperty("--tag-color", colour);
      }
    });
  }

  function setUpNavToggle() {
    var toggle = document.querySelector(".nav-toggle");
    var header = document.querySelector(".appbar");
    if (!toggle || !header) return;
    toggle.addEventListener("click", function () {
      var open = header.classList.toggle("nav-open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("nav-open")) {
        header.classList.remove("nav-open");
        toggle.setAttribute("aria-expanded", "false");
        toggle.focus();
      }
    });
  }

  function setUpBulkForm() {
    var form = document.querySelector("[data-bulk-form]");
    if (!form) return;
    var all = form.querySelector("[data-select-all]");
    var boxes = function () { return form.querySelectorAll("input[name=ids]"); };
    var counter = form.querySelector("[data-selected-count]");

    function refresh() {
      var list = boxes();
      var checked = 0;
      list.forEach(function (box) {
        if (box.checked) checked += 1;
        var row = box.closest("tr");
        if (row) row.classList.toggle("selected", box.checked);
      });
      if (counter) counter.textContent = checked ? "(" + checked + " selected)" : "";
      if (all) {
        all.checked = checked > 0 && checked === list.length;
        all.indeterminate = checked > 0 && checked < list.length;
      }
    }

    if (all) {
      all.addEventListener("change", function () {
        boxes().forEach(function (box) { box.checked = all.checked; });
        refresh();
      });
    }
    form.addEventListener("change", function (event) {
      if (event.target.name === "ids") refresh();
    });
    // Enter in the tag box adds the tag (the form's first button would assign).
    var tagInput = form.querySelector("[data-submits=tag]");
    var tagButton = form.querySelector("[data-action=tag]");
    if (tagInput && tagButton) {
      tagInput.addEventListener("keydown", function (event) {
        if (event.key === "Enter") {
          event.preventDefault();
          tagButton.click();
        }
      });
    }
    refresh();
  }

  // The conversation: newest message in view on load, and after each refresh when
  // the reader was already at the bottom (reading older messages is left alone).
  var threadWasAtBottom = true;
  var threadScrollTop = 0;

  function thread() { return document.querySelector("[data-thread]"); }

  function atBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 40; }

  function restoreThreadScroll() {
    var el = thread();
    if (!el) return;
    el.scrollTop = threadWasAtBottom ? el.scrollHeight : threadScrollTop;
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    var el = thread();
    if (el && event.detail.target && event.detail.target.id === "conversation") {
      threadWasAtBottom = atBottom(el);
      threadScrollTop = el.scrollTop;
      // A reply just sent by this reader: show it.
      if (event.detail.requestConfig && event.detail.requestConfig.verb === "post") threadWasAtBottom = true;
    }
  });

  document.addEventListener("htmx:load", function (event) {
    colourTags(event.detail.elt);
    if (event.detail.elt.id === "conversation") restoreThreadScroll();
  });

  document.addEventListener("DOMContentLoaded", function () {
    colourTags(document);
    setUpNavToggle();
    setUpBulkForm();
    restoreThreadScroll();
  });
})();
