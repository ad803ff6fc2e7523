// rie dashboard: small line charts on a canvas (no library).
"use strict";

const Charts = (() => {
  const PAD = { left: 38, right: 8, top: 8, bottom: 18 };

  function niceMax(value) {
    if (value <= 0) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (value <= step * exp) return step * exp;
    }
    return 10 * exp;
  }

  function label(value) {
    if (value >= 1000) return (value / 1000).toFixed(value >= 10000 ? 0 : 1) + "k";
    return String(Math.round(value * 100) / 100);
  }

  // lines: [{points: [[epochSecond, value], ...], color}]; the x axis spans `windowS` up to `now`.
  // Returns the number of points above zero drawn (also left in canvas.dataset.points, for tests).
  function draw(canvas, lines, now, windowS) {
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const start = now - windowS;
    let max = 0;
    for (const line of lines) {
      for (const [t, v] of line.points) if (t > start && v !== null && v > max) max = v;
    }
    max = niceMax(max);
    const plotW = width - PAD.left - PAD.right;
    const plotH = height - PAD.top - PAD.bottom;
    const x = (t) => PAD.left + ((t - start) / windowS) * plotW;
    const y = (v) => PAD.top + plotH - (v / max) * plotH;

    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    ctx.strokeStyle = "#e5e7eb";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const frac of [0, 0.5, 1]) {
      const yy = Math.round(y(max * frac)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(PAD.left, yy);
      ctx.lineTo(width - PAD.right, yy);
      ctx.stroke();
      ctx.fillText(label(max * frac), PAD.left - 4, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const minutes of [15, 10, 5, 0]) {
      const xx = x(now - minutes * 60);
      ctx.fillText(minutes ? `-${minutes}m` : "now", Math.min(Math.max(xx, PAD.left + 8), width - 12), height - PAD.bottom + 4);
    }

    let drawn = 0;
    for (const line of lines) {
      const pts = line.points.filter(([t, v]) => t > start && v !== null);
      if (!pts.length) continue;
      ctx.strokeStyle = line.color;
      ctx.fillStyle = line.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      pts.forEach(([t, v], i) => (i ? ctx.lineTo(x(t + 0.5), y(v)) : ctx.moveTo(x(t + 0.5), y(v))));
      ctx.stroke();
      // a dot per point above zero when they are few enough to tell apart
      const marked = pts.filter(([, v]) => v > 0);
      if (marked.length < 120) {
        for (const [t, v] of marked) {
          ctx.beginPath();
          ctx.arc(x(t + 0.5), y(v), 2, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
      drawn += marked.length;
    }
    canvas.dataset.points = String(drawn);
    return drawn;
  }

  return { draw };
})();
