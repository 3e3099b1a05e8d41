// batchway console: live progress, confirmations, and the usage charts. No framework.
"use strict";

// A running batch's progress block reloads itself until the batch has ended, then the
// whole page does once.
function followProgress(box) {
  const every = Math.max(500, 1000 * parseFloat(box.dataset.every || "2"));
  const tick = async () => {
    const block = box.querySelector(".progress-block");
    if (block && block.dataset.ended === "1") return;
    try {
      const answer = await fetch(box.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) {
        box.innerHTML = await answer.text();
        const now = box.querySelector(".progress-block");
        // the batch has just ended: load the page again for its final lines and files
        if (now && now.dataset.ended === "1") { window.location.reload(); return; }
      }
    } catch (_) { /* the next tick tries again */ }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

// Buttons with data-confirm ask before their form is sent.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

const SERIES = {
  cost: [["batch_cost", "Batch (USD)", "#2f6fd6"], ["interactive_cost", "Interactive (USD)", "#d68a2f"]],
  tokens: [["batch_tokens", "Batch tokens", "#2f6fd6"], ["interactive_tokens", "Interactive tokens", "#d68a2f"]],
};

const usd = (v) => v == null ? "--" : v === 0 ? "$0" : "$" + (Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));
const count = (v) => v == null ? "--" : Math.round(v).toLocaleString("en");
const FORMAT = { cost: usd, tokens: count };

function drawChart(box) {
  const data = JSON.parse(document.getElementById(box.dataset.chart).textContent);
  const series = SERIES[box.dataset.series];
  const format = FORMAT[box.dataset.series];
  if (!window.uPlot || !data.x.length) {
    box.textContent = data.x.length ? "" : "Nothing to draw in this period.";
    return;
  }
  const options = {
    width: Math.max(320, box.clientWidth),
    height: 220,
    series: [{}, ...series.map(([, label, stroke]) => ({
      label, stroke, width: 2, fill: stroke + "22", value: (u, v) => format(v),
    }))],
    axes: [{}, { size: 90, values: (u, ticks) => ticks.map(format) }],
  };
  box.chart = new uPlot(options, [data.x, ...series.map(([name]) => data[name])], box);
}

window.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(followProgress);
  document.querySelectorAll("[data-chart]").forEach(drawChart);
});
