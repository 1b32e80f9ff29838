// History answers turned into chart columns.

const STEP = { '1m': 60, '1h': 3600 };

/**
 * A history answer (one series, or a device's `series` list, summed) as
 * [times in s, rx bit/s, tx bit/s], with zeros where nothing was stored
 * (the history keeps no sample of an interval without traffic).
 */
export function toRates(history) {
  const byTime = new Map();
  let step = 0;
  for (const s of Array.isArray(history.series) ? history.series : [history]) {
    for (const p of s.points) {
      const span = s.tier === 'raw' ? p.covered_seconds : STEP[s.tier] ?? s.step_seconds ?? 1;
      step = Math.max(step, span || 0);
      const t = p.at_ms / 1000;
      const v = byTime.get(t) ?? { rx: 0, tx: 0 };
      v.rx += ((p.values.rx_bytes ?? 0) * 8) / (span || 1);
      v.tx += ((p.values.tx_bytes ?? 0) * 8) / (span || 1);
      byTime.set(t, v);
    }
  }
  const times = [...byTime.keys()].sort((a, b) => a - b);
  const out = [[], [], []];
  const push = (t, rx, tx) => {
    out[0].push(t);
    out[1].push(rx);
    out[2].push(tx);
  };
  times.forEach((t, i) => {
    const v = byTime.get(t);
    const gap = i > 0 ? t - times[i - 1] : 0;
    // Nothing is stored for an interval without traffic: draw it as 0.
    if (i > 0 && gap > step * 1.5) {
      push(times[i - 1] + step, 0, 0);
      if (gap > step * 2.5) push(t - step, 0, 0);
    }
    push(t, v.rx, v.tx);
  });
  return out;
}
