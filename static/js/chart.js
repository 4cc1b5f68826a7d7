// The detail screen's chart: calls started per second and outcomes over the last 10 minutes,
// from the history live.js accumulates out of the stream's `task` events.

import { html, useEffect, useRef, useState } from '../vendor/htm-3.1.1-preact-standalone.module.js';
import uPlot from '../vendor/uPlot-1.6.32.esm.js';
import { t } from './i18n.js';
import * as live from './live.js';

export const COLOURS = { started: '#2563eb', answered: '#16a34a', failed: '#dc2626' };

function dataOf(id) {
  const points = live.historyOf(id);
  return [
    points.map((p) => p.t),
    points.map((p) => p.started),
    points.map((p) => p.answered),
    points.map((p) => p.failed),
  ];
}

export function RateChart({ id }) {
  const box = useRef(null);
  const [empty, setEmpty] = useState(live.historyOf(id).length === 0);
  useEffect(() => {
    const el = box.current;
    const series = (label, colour) => ({ label, stroke: colour, width: 2, points: { show: true, size: 5 } });
    const plot = new uPlot({
      width: Math.max(el.clientWidth, 300),
      height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{}, {}],
      series: [
        {},
        series(t('chart.started'), COLOURS.started),
        series(t('chart.answered'), COLOURS.answered),
        series(t('chart.failed'), COLOURS.failed),
      ],
    }, dataOf(id), el);
    const update = () => {
      // The last 10 minutes, or less while the page has seen less: the chart starts where its
      // first reading is.
      const data = dataOf(id);
      const now = Date.now() / 1000;
      const first = data[0].length ? data[0][0] - 5 : now - 60;
      setEmpty(data[0].length === 0);
      plot.setData(data, false);
      plot.setScale('x', { min: Math.max(first, now - 600), max: now });
    };
    update();
    const off = live.subscribe(update);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(el.clientWidth, 300), height: 220 }));
    resize.observe(el);
    return () => { off(); resize.disconnect(); plot.destroy(); };
  }, [id]);
  return html`<div class="chart-wrap">
    <div class="chart" ref=${box} id="rate-chart"></div>
    ${empty ? html`<div class="chart-empty muted">${t('chart.empty')}</div>` : null}
  </div>`;
}
