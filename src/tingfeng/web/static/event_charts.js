// The event page's charts (templates/event.html): posts per hour, the repost tree and the media
// tiers, from the JSON blocks the page carries. Names in the tree are public bylines of collected
// posts (untrusted): ECharts draws them as SVG text, and tooltips use its rich-text mode, never
// HTML. Without ECharts (not installed) each chart's place says so in a line of text.
(() => {
  const $ = (id) => document.getElementById(id);
  const data = (id) => {
    const block = $(id);
    return block ? JSON.parse(block.textContent) : null;
  };
  const T = data("event-text") || {};
  const charts = [];

  function init(box) {
    if (!box) return null;
    if (!window.echarts) {
      box.className = "chart-note";
      box.textContent = T.noCharts;
      return null;
    }
    const chart = window.echarts.init(box, null, {renderer: "svg"});
    charts.push(chart);
    return chart;
  }

  const timeline = data("timeline-data");
  const timelineChart = timeline && init($("timeline-chart"));
  if (timelineChart) {
    timelineChart.setOption({
      animation: false,
      grid: {left: 40, right: 16, top: 16, bottom: 48},
      tooltip: {trigger: "axis", renderMode: "richText"},
      dataZoom: timeline.labels.length > 72 ? [{type: "slider", height: 16, bottom: 4}] : [],
      xAxis: {type: "category", data: timeline.labels},
      yAxis: {type: "value", minInterval: 1},
      series: [{
        name: T.posts, type: "bar", data: timeline.counts, itemStyle: {color: "#3b82f6"},
        barMaxWidth: 24,
      }],
    });
  }

  const spread = data("spread-data");
  const treeChart = spread && init($("spread-chart"));
  if (treeChart) {
    const big = spread.shown > 40;
    treeChart.setOption({
      animation: false,
      tooltip: {trigger: "item", renderMode: "richText",
        formatter: (p) => `${p.data.post_id === spread.tree.post_id ? T.root + " " : ""}${p.name} #${p.data.post_id}`},
      series: [{
        type: "tree",
        data: [spread.tree],
        layout: big ? "radial" : "orthogonal",
        orient: "LR",
        top: "4%", bottom: "4%", left: big ? "4%" : "8%", right: big ? "4%" : "16%",
        symbolSize: big ? 5 : 8,
        initialTreeDepth: -1,
        expandAndCollapse: false,
        roam: true,
        label: {show: spread.shown <= 80, fontSize: 10, position: "right"},
        itemStyle: {color: "#1f4e79"},
        lineStyle: {color: "#9ca3af", width: 1},
      }],
    });
  }

  const tiers = data("tiers-data");
  const tierChart = tiers && init($("tiers-chart"));
  if (tierChart) {
    tierChart.setOption({
      animation: false,
      tooltip: {trigger: "item", renderMode: "richText"},
      legend: {bottom: 0, type: "scroll"},
      series: [{type: "pie", radius: ["35%", "65%"], center: ["50%", "45%"], data: tiers,
        label: {formatter: "{b} {d}%"}}],
    });
  }

  window.addEventListener("resize", () => charts.forEach((c) => c.resize()));
})();
