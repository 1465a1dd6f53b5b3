// The report site's own script: draw every chart (Vega-Lite spec inlined in the page) as SVG
// with the site's Vega bundle (/static/vega.js), and the explore page's copy-link button.
(function () {
  function drawCharts() {
    document.querySelectorAll(".chart").forEach(function (box) {
      var source = box.querySelector('script[type="application/json"]');
      var view = box.querySelector(".view");
      if (!source || !view || box.dataset.rendered) return;
      var spec = JSON.parse(source.textContent);
      window.vegaEmbed(view, spec, { renderer: "svg", actions: false })
        .then(function () { box.dataset.rendered = "1"; })
        .catch(function (error) {
          box.dataset.rendered = "error";
          view.textContent = "chart could not be drawn: " + error;
        });
    });
  }
  function copyLink() {
    var button = document.getElementById("copy-link");
    if (!button) return;
    button.addEventListener("click", function () {
      var done = function () { button.textContent = "link copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(window.location.href).then(done, function () {
          window.prompt("Copy this link:", window.location.href);
        });
      } else {
        window.prompt("Copy this link:", window.location.href);
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawCharts(); copyLink(); });
})();
