// Auto-refresh for pages that ask for it (data-refresh on <body>), paused while the
// operator is typing or has selected text. Everything works without this script.
(function () {
  var secs = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!secs) return;
  setInterval(function () {
    var a = document.activeElement;
    var typing = a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
    var selecting = String(window.getSelection ? window.getSelection() : "").length > 0;
    if (!typing && !selecting && document.visibilityState === "visible") location.reload();
  }, secs * 1000);
})();
