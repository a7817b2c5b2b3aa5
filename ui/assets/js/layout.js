// Layered (Sugiyama-style) graph layout, left to right: cycles broken by
// reversing DFS back edges, layers by longest path, long edges split with
// dummy nodes, crossings reduced with barycentre sweeps, then nodes placed
// in their order and pulled towards their neighbours.

export function layout(nodes, edges, opts = {}) {
  const colGap = opts.colGap ?? 230, rowGap = opts.rowGap ?? 64;
  const ids = nodes.map((n) => n.id);
  const index = new Map(ids.map((id, i) => [id, i]));
  const n = ids.length;
  const out = Array.from({length: n}, () => []);
  const es = [];
  for (const e of edges) {
    const a = index.get(e.source), b = index.get(e.target);
    if (a === undefined || b === undefined || a === b) continue;
    es.push([a, b, e]);
    out[a].push(es.length - 1);
  }
  // 1. Break cycles: iterative DFS, back edges reversed.
  const state = new Uint8Array(n); // 0 new, 1 on stack, 2 done
  const reversed = new Uint8Array(es.length);
  for (let r = 0; r < n; r++) {
    if (state[r]) continue;
    const stack = [[r, 0]];
    state[r] = 1;
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [v, i] = top;
      if (i < out[v].length) {
        top[1]++;
        const ei = out[v][i], w = es[ei][1];
        if (state[w] === 1) reversed[ei] = 1;
        else if (state[w] === 0) { state[w] = 1; stack.push([w, 0]); }
      } else { state[v] = 2; stack.pop(); }
    }
  }
  const dag = es.map(([a, b], i) => (reversed[i] ? [b, a] : [a, b]));
  // 2. Layers: longest path from the sources (Kahn order).
  const indeg = new Int32Array(n), succ = Array.from({length: n}, () => []);
  for (const [a, b] of dag) { indeg[b]++; succ[a].push(b); }
  const layer = new Int32Array(n);
  const queue = [];
  for (let i = 0; i < n; i++) if (!indeg[i]) queue.push(i);
  for (let qi = 0; qi < queue.length; qi++) {
    const v = queue[qi];
    for (const w of succ[v]) { layer[w] = Math.max(layer[w], layer[v] + 1); if (--indeg[w] === 0) queue.push(w); }
  }
  // Pull sinks next to their callers' layer: keeps leaves out of the far column.
  // 3. Dummy nodes for edges spanning more than one layer.
  const L = [];
  const vlayer = Array.from(layer);
  const vneighbors = []; // [from, to] between virtual ids in adjacent layers
  const edgeChains = [];
  let vcount = n;
  dag.forEach(([a, b], i) => {
    const chain = [a];
    let prev = a;
    for (let l = vlayer[a] + 1; l < vlayer[b]; l++) {
      const d = vcount++;
      vlayer[d] = l;
      vneighbors.push([prev, d]);
      chain.push(d);
      prev = d;
    }
    vneighbors.push([prev, b]);
    chain.push(b);
    edgeChains[i] = reversed[i] ? chain.slice().reverse() : chain;
  });
  const up = Array.from({length: vcount}, () => []), down = Array.from({length: vcount}, () => []);
  for (const [a, b] of vneighbors) { down[a].push(b); up[b].push(a); }
  for (let v = 0; v < vcount; v++) (L[vlayer[v]] ||= []).push(v);
  for (let l = 0; l < L.length; l++) L[l] ||= [];
  // 4. Crossing reduction: barycentre sweeps down and up.
  const pos = new Float64Array(vcount);
  const setPos = () => L.forEach((ly) => ly.forEach((v, i) => { pos[v] = i; }));
  setPos();
  const sweep = (layers, nb) => {
    for (const ly of layers) {
      const bc = new Map();
      for (const v of ly) {
        const ns = nb[v];
        bc.set(v, ns.length ? ns.reduce((acc, w) => acc + pos[w], 0) / ns.length : pos[v]);
      }
      ly.sort((a, b) => bc.get(a) - bc.get(b));
      ly.forEach((v, i) => { pos[v] = i; });
    }
  };
  const iters = opts.iterations ?? (vcount > 2000 ? 4 : 12);
  for (let it = 0; it < iters; it++) {
    sweep(L.slice(1), up);
    sweep(L.slice(0, -1).reverse(), down);
  }
  // 5. Coordinates: order within layer, then a few passes moving nodes to
  // the median of their neighbours without breaking order or spacing.
  const y = new Float64Array(vcount);
  const gapOf = (v) => (v < n ? rowGap : rowGap * 0.35);
  for (const ly of L) {
    let acc = 0;
    for (const v of ly) { y[v] = acc; acc += gapOf(v); }
  }
  const height = Math.max(...L.map((ly) => (ly.length ? y[ly[ly.length - 1]] : 0)), 0);
  for (const ly of L) {
    const last = ly.length ? y[ly[ly.length - 1]] : 0;
    const off = (height - last) / 2;
    for (const v of ly) y[v] += off;
  }
  for (let pass = 0; pass < 6; pass++) {
    const nb = pass % 2 ? down : up;
    for (const ly of pass % 2 ? [...L].reverse() : L) {
      const want = ly.map((v) => {
        const ns = nb[v].length ? nb[v] : (pass % 2 ? up[v] : down[v]);
        if (!ns.length) return y[v];
        const ys = ns.map((w) => y[w]).sort((a, b) => a - b);
        return ys[(ys.length - 1) >> 1] * 0.5 + ys[ys.length >> 1] * 0.5;
      });
      place(ly, want, ly.map(gapOf), y);
    }
  }
  let minY = Infinity, maxY = -Infinity;
  for (let v = 0; v < vcount; v++) { minY = Math.min(minY, y[v]); maxY = Math.max(maxY, y[v]); }
  if (!Number.isFinite(minY)) { minY = 0; maxY = 0; }
  const X = (v) => vlayer[v] * colGap;
  const Yc = (v) => y[v] - minY;
  const nodePos = new Map(ids.map((id, i) => [id, {x: X(i), y: Yc(i), layer: vlayer[i]}]));
  const edgePaths = es.map(([, , e], i) => ({edge: e, points: edgeChains[i].map((v) => [X(v), Yc(v)])}));
  return {nodes: nodePos, edges: edgePaths, width: (L.length - 1) * colGap, height: maxY - minY, layers: L.length};
}

// place sets y of the nodes of one layer as close as possible (least
// squares) to want while keeping their order and minimum gaps: isotonic
// regression by pool-adjacent-violators on want minus the cumulative gaps.
function place(ly, want, gaps, y) {
  const off = new Float64Array(ly.length);
  for (let i = 1; i < ly.length; i++) off[i] = off[i - 1] + gaps[i - 1];
  const sum = [], cnt = [];
  for (let i = 0; i < ly.length; i++) {
    sum.push(want[i] - off[i]); cnt.push(1);
    while (sum.length > 1 && sum[sum.length - 2] / cnt[cnt.length - 2] > sum[sum.length - 1] / cnt[cnt.length - 1]) {
      sum[sum.length - 2] += sum.pop();
      cnt[cnt.length - 2] += cnt.pop();
    }
  }
  let i = 0;
  for (let b = 0; b < sum.length; b++) {
    const z = sum[b] / cnt[b];
    for (let k = 0; k < cnt[b]; k++, i++) y[ly[i]] = z + off[i];
  }
}

// crossings counts edge crossings between adjacent layers (for tests).
export function crossings(result) {
  const segs = [];
  for (const e of result.edges) {
    for (let i = 1; i < e.points.length; i++) segs.push([e.points[i - 1], e.points[i]]);
  }
  let c = 0;
  for (let i = 0; i < segs.length; i++) {
    for (let j = i + 1; j < segs.length; j++) {
      const [[ax, ay], [bx, by]] = segs[i], [[cx, cy], [dx, dy]] = segs[j];
      if (ax !== cx || bx !== dx) continue;
      if ((ay - cy) * (by - dy) < 0) c++;
    }
  }
  return c;
}
