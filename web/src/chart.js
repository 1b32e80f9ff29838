// A uPlot time-series chart. uPlot draws on a canvas from columnar arrays
// ([times in s, series...]); this wraps one chart in a component that
// follows its container's width, the system's light/dark colours, and new
// data. `data-points` and `data-last` on the element say what it drew.

import { html } from 'htm/preact';
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { useDark } from './hooks.js';

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/**
 * `series`: [{ label, color: CSS variable name }]; `data`: [times, ...ys]
 * with nulls for gaps; `format` labels the y axis and the legend;
 * `xRange`: [from, to] in s, else the data's own.
 */
export function Chart({ data, series, format, label, height = 220, xRange }) {
  const el = useRef(null);
  const plot = useRef(null);
  const dark = useDark();
  useEffect(() => {
    const fg = cssVar('--muted');
    const grid = cssVar('--grid');
    const axis = {
      stroke: fg,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1 },
    };
    const opts = {
      width: Math.max(el.current.clientWidth, 200),
      height,
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: xRange ? { time: true, range: () => xRange } : { time: true },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes: [axis, { ...axis, size: 92, values: (u, vals) => vals.map((v) => format(v)) }],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: cssVar(s.color),
          width: 1.5,
          value: (u, v) => (v === null || v === undefined ? '—' : format(v)),
        })),
      ],
    };
    plot.current = new uPlot(opts, data, el.current);
    const resize = new ResizeObserver(() => {
      const width = Math.max(el.current?.clientWidth ?? 0, 200);
      plot.current?.setSize({ width, height });
    });
    resize.observe(el.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [dark, height, series.map((s) => s.label).join(), xRange?.join()]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  const n = data[0]?.length ?? 0;
  return html`<div
    class="chart"
    ref=${el}
    role="img"
    aria-label=${label}
    data-points=${n}
    data-last=${n ? data[0][n - 1] : ''}
  ></div>`;
}
