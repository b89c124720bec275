// The inspect report as a page: reads the JSON document in #report and draws it with
// plain DOM and SVG. No library, no network. Every text from the report goes in with
// textContent or setAttribute, never as markup.
//
// For tests: once everything is drawn, <body> gets data-rendered="1"; any error (thrown,
// unhandled, or a blocked request) is written to <body data-errors="…">. The page reads
// `#q=TEXT&sort=memory|elements&zoom=PREFIX&zoom=PREFIX…` at load: a link to one view.
(function () {
  'use strict';

  const body = document.body;
  const errors = [];
  function recordError(what) {
    errors.push(String(what));
    body.setAttribute('data-errors', errors.join('\n'));
  }
  window.addEventListener('error', (e) => recordError(e.message || 'error'));
  window.addEventListener('unhandledrejection', (e) =>
    recordError('unhandled rejection: ' + String(e.reason && e.reason.message ? e.reason.message : e.reason)));
  document.addEventListener('securitypolicyviolation', (e) =>
    recordError('blocked by the page policy: ' + e.violatedDirective + ' ' + e.blockedURI));

  // ---- small helpers ------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const NS = $('icicle').namespaceURI; // the SVG namespace, as the HTML parser set it
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : 0);
  const obj = (v) => (v && typeof v === 'object' && !Array.isArray(v) ? v : {});
  const arr = (v) => (Array.isArray(v) ? v : []);
  const str = (v) => (v === null || v === undefined ? '' : String(v));
  const sum = (xs, f) => xs.reduce((a, x) => a + f(x), 0);

  function make(node, attrs, text) {
    for (const k of Object.keys(attrs || {})) node.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const el = (tag, attrs, text) => make(document.createElement(tag), attrs, text);
  const sv = (tag, attrs, text) => make(document.createElementNS(NS, tag), attrs, text);

  function debounce(f, ms) {
    let t = 0;
    return () => {
      clearTimeout(t);
      t = setTimeout(f, ms);
    };
  }

  const fmtInt = (n) => Math.round(num(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function fmtBytes(n) {
    let [v, i] = [num(n), 0];
    for (; Math.abs(v) >= 1024 && i < UNITS.length - 1; i++) v /= 1024;
    const digits = i === 0 ? 0 : Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0;
    return v.toFixed(digits) + ' ' + UNITS[i];
  }
  // Power-of-two bin bounds as INFO KEYSIZES writes them: 512, 1K, 2K, … 1M.
  function fmtPow2(n, unit) {
    let [v, i] = [num(n), 0];
    for (; v >= 1024 && v % 1024 === 0 && i < 5; i++) v /= 1024;
    return unit ? fmtInt(v) + ' ' + UNITS[i] : fmtInt(v) + ['', 'K', 'M', 'G', 'T', 'P'][i];
  }
  const fmtPct = (part, whole) => (num(whole) > 0 ? ((100 * num(part)) / num(whole)).toFixed(1) + '%' : '–');
  function fmtDate(ms) {
    const d = new Date(typeof ms === 'number' ? ms : NaN);
    return isNaN(d.getTime()) ? '–' : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }
  function fmtSpan(ms) {
    const s = Math.abs(ms) / 1000;
    if (s < 60) return s.toFixed(0) + ' s';
    if (s < 3600) return (s / 60).toFixed(1) + ' min';
    if (s < 86400) return (s / 3600).toFixed(1) + ' h';
    return (s / 86400).toFixed(1) + ' d';
  }

  // A key as text: a string with its control characters as \xHH; {"base64": …} (not
  // UTF-8) decoded to bytes, printable ASCII kept, the rest (and `\`) escaped.
  const hex = (b) => '\\x' + (b < 16 ? '0' : '') + b.toString(16);
  function keyText(k) {
    if (typeof k === 'string') return { text: k.replace(/[\x00-\x1f\x7f]/g, (c) => hex(c.charCodeAt(0))), binary: false };
    const b64 = obj(k).base64;
    if (typeof b64 !== 'string') return { text: str(k), binary: false };
    let raw;
    try {
      raw = atob(b64);
    } catch (e) {
      return { text: '(bad base64) ' + b64, binary: true };
    }
    let out = '';
    for (let i = 0; i < raw.length; i++) {
      const b = raw.charCodeAt(i);
      out += b === 0x5c ? '\\\\' : b >= 0x20 && b < 0x7f ? raw[i] : hex(b);
    }
    return { text: out, binary: true };
  }

  // Text widths from one offscreen canvas (no layout per label).
  const measure = document.createElement('canvas').getContext('2d');
  let measureFont = '';
  function fit(text, width) {
    if (!measure) return text.length * 7 <= width ? text : '';
    if (!measureFont) measureFont = measure.font = '12px ' + getComputedStyle(body).fontFamily;
    if (measure.measureText(text).width <= width) return text;
    let lo = 0;
    let hi = text.length;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (measure.measureText(text.slice(0, mid) + '…').width <= width) lo = mid;
      else hi = mid - 1;
    }
    return lo > 0 ? text.slice(0, lo) + '…' : '';
  }

  // ---- the tooltip --------------------------------------------------------------------

  const tip = $('tip');
  function moveTip(ev) {
    const pad = 14;
    let x = ev.clientX + pad;
    let y = ev.clientY + pad;
    if (x + tip.offsetWidth > window.innerWidth) x = Math.max(0, ev.clientX - pad - tip.offsetWidth);
    if (y + tip.offsetHeight > window.innerHeight) y = Math.max(0, ev.clientY - pad - tip.offsetHeight);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  const hideTip = () => tip.toggleAttribute('hidden', true);
  // `pairs` is a function, so a tooltip's figures are only worked out when it shows.
  function withTip(node, title, pairs) {
    node.addEventListener('mouseenter', (ev) => {
      const dl = el('dl');
      for (const [k, v] of pairs()) dl.append(el('dt', null, k), el('dd', null, v));
      tip.replaceChildren(el('div', { class: 'title' }, title), dl);
      tip.hidden = false;
      moveTip(ev);
    });
    node.addEventListener('mousemove', moveTip);
    node.addEventListener('mouseleave', hideTip);
  }

  // ---- the header ---------------------------------------------------------------------

  function drawHeader(r) {
    const files = arr(r.files).map(obj);
    document.title = (files.length ? files.map((f) => str(f.name)).join(', ') : 'inspect') + ' — redis-migration inspect';
    const target = str(r.target_version) || '?';
    $('context').textContent =
      `Memory as Redis ${target} would hold it · expiry judged at ${fmtDate(r.now_ms)}` +
      ` · ${fmtInt(files.length)} file${files.length === 1 ? '' : 's'}`;
    const rows = files.map((f) => ({ f, aux: obj(f.aux) }));
    const ctime = (aux) => {
      const s = Number(aux.ctime);
      return aux.ctime !== undefined && isFinite(s) ? fmtDate(s * 1000) : str(aux.ctime) || '–';
    };
    const auxCell = (row) => {
      const keys = Object.keys(row.aux);
      const d = el('details');
      d.append(el('summary', null, `${keys.length} field${keys.length === 1 ? '' : 's'}`));
      const dl = el('dl');
      for (const k of keys) dl.append(el('dt', null, k), el('dd', null, str(row.aux[k])));
      d.append(dl);
      return d;
    };
    const nameCell = (row) => {
      const span = el('span', null, str(row.f.name));
      if (row.f.log_not_applied) span.append(el('span', { class: 'note' }, '(the log part is not applied)'));
      return span;
    };
    table($('files'), [
      { title: 'File', cell: nameCell },
      { title: 'Format', cell: (x) => str(x.f.format) },
      { title: 'redis-ver', cell: (x) => str(x.aux['redis-ver']) || '–' },
      { title: 'Written (ctime)', cell: (x) => ctime(x.aux) },
      { title: 'Size', num: true, cell: (x) => fmtBytes(x.f.bytes) },
      { title: 'AUX', cell: auxCell },
    ], { rows, empty: 'No input file.' });

    const expired = obj(r.expired);
    const root = obj(r.prefixes);
    const cards = [
      ['Keys', fmtInt(r.keys), ''],
      ['Memory', fmtBytes(r.memory_bytes), fmtInt(r.memory_bytes) + ' bytes'],
      ['Expired keys', fmtInt(expired.keys), fmtBytes(expired.memory_bytes) + ' (not counted above)'],
      ['Expired hash fields', fmtInt(r.expired_fields), ''],
      ['Memory without TTL', fmtPct(root.no_ttl_bytes, root.memory_bytes), fmtBytes(root.no_ttl_bytes)],
    ];
    $('totals').replaceChildren(
      ...cards.map(([label, value, sub]) => {
        const c = el('div', { class: 'card' });
        c.append(el('div', { class: 'label' }, label), el('div', { class: 'value' }, value));
        if (sub) c.append(el('div', { class: 'sub' }, sub));
        return c;
      }),
    );
  }

  // ---- the icicle of memory by prefix -------------------------------------------------

  function drawIcicle(rootIn, zoomPath) {
    const root = obj(rootIn);
    const svg = $('icicle');
    const box = $('icicle-box');
    const crumbs = $('crumbs');
    const ROW = 30;
    const MAX_LEVELS = 8;
    const kids = (n) => arr(n.children).filter((c) => c && typeof c === 'object' && !Array.isArray(c));
    // Parent, depth and hue of every node: each top-level branch keeps one hue.
    const info = new Map([[root, { parent: null, depth: 0, hue: 215 }]]);
    const walk = [root];
    while (walk.length) {
      const n = walk.pop();
      const ni = info.get(n);
      kids(n).forEach((c, i) => {
        if (info.has(c)) return;
        info.set(c, { parent: n, depth: ni.depth + 1, hue: ni.depth === 0 ? (i * 137.508 + 200) % 360 : ni.hue });
        walk.push(c);
      });
    }
    const name = (n) => (n === root ? 'all keys' : str(n.prefix) || '(empty prefix)');
    // A child whose prefix extends its parent's shows only the new part in its block.
    function shortName(n) {
      const p = info.get(n).parent;
      const s = str(n.prefix);
      const ps = p && p !== root ? str(p.prefix) : '';
      return ps && s.length > ps.length && s.startsWith(ps) ? '…' + s.slice(ps.length) : name(n);
    }
    function fill(n) {
      const { depth, hue } = info.get(n);
      if (n === root) return ['hsl(215,22%,32%)', '#fff'];
      const light = Math.min(84, 36 + depth * 9);
      const ink = light < 55 ? '#fff' : '#1f2328';
      return str(n.prefix) === '(other)' ? [`hsl(0,0%,${Math.max(light, 60)}%)`, '#1f2328'] : [`hsl(${hue.toFixed(0)},50%,${light}%)`, ink];
    }

    let focus = root;
    for (const want of zoomPath) {
      const next = kids(focus).find((c) => str(c.prefix) === want);
      if (!next) break;
      focus = next;
    }
    let drawnWidth = 0;

    function zoom(n) {
      const keyboard = svg.contains(document.activeElement);
      focus = n;
      draw();
      const first = svg.querySelector('.node');
      if (first && keyboard) first.focus();
    }

    // Draws n and what fits below it into out.nodes (out.deepest: the lowest level drawn).
    function place(n, x, w, level, levels, out) {
      const [bg, ink] = fill(n);
      const g = sv('g', { class: 'node', transform: `translate(${x.toFixed(2)},${level * ROW})`, tabindex: 0, role: 'button' });
      g.setAttribute('aria-label', `${name(n)}: ${fmtBytes(n.memory_bytes)}, ${fmtInt(n.keys)} keys`);
      g.append(sv('rect', { class: 'cell', width: Math.max(0.5, w - 1).toFixed(2), height: ROW - 1, fill: bg }));
      const mem = num(n.memory_bytes);
      // The first of these that fits, else the prefix cut short.
      const short = n === focus ? name(n) : shortName(n);
      const texts = [name(n), short].flatMap((l) => [`${l} · ${fmtBytes(mem)} · ${fmtInt(n.keys)} keys`, `${l} · ${fmtBytes(mem)}`]);
      const text = texts.find((s) => fit(s, w - 10) === s) || fit(short, w - 10);
      if (text) g.append(sv('text', { x: 5, y: ROW / 2 + 4, fill: ink }, text));
      withTip(g, name(n), () => {
        const p = info.get(n).parent;
        const out = [['Keys', fmtInt(n.keys)], ['Memory', fmtBytes(mem)]];
        if (p) out.push(['Share of ' + name(p), fmtPct(mem, p.memory_bytes)]);
        out.push(['Share of all', fmtPct(mem, root.memory_bytes)]);
        out.push(['Without TTL', `${fmtBytes(n.no_ttl_bytes)} (${fmtPct(n.no_ttl_bytes, mem)})`]);
        if (kids(n).length) out.push(['Sub-prefixes', fmtInt(kids(n).length)]);
        return out;
      });
      const act = () => (n === focus ? zoom(info.get(n).parent || n) : zoom(n));
      g.addEventListener('click', act);
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') {
          ev.preventDefault();
          act();
        }
      });
      out.nodes.push(g);
      out.deepest = Math.max(out.deepest, level);
      const cs = kids(n);
      const total = Math.max(mem, sum(cs, (c) => num(c.memory_bytes)));
      if (level + 1 >= levels || total <= 0) return;
      let cx = x;
      for (const c of cs) {
        const cw = (w * num(c.memory_bytes)) / total;
        if (cw >= 1) place(c, cx, cw, level + 1, levels, out); // thinner than a pixel: not drawn
        cx += cw;
      }
    }

    function draw() {
      hideTip();
      const chain = [];
      for (let n = focus; n; n = info.get(n).parent) chain.unshift(n);
      crumbs.replaceChildren();
      chain.forEach((n, i) => {
        if (i) crumbs.append(el('span', { class: 'sep' }, '›'));
        const b = el('button', { type: 'button' }, name(n));
        if (n === focus) b.setAttribute('aria-current', 'true');
        else b.addEventListener('click', () => zoom(n));
        crumbs.append(b);
      });
      const empty = num(root.memory_bytes) <= 0 && kids(root).length === 0;
      $('icicle-empty').hidden = !empty;
      const W = Math.max(300, Math.floor(box.clientWidth));
      drawnWidth = W;
      const out = { nodes: [], deepest: -1 };
      if (!empty) place(focus, 0, W, 0, MAX_LEVELS, out);
      const H = (out.deepest + 1) * ROW;
      make(svg, { width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-cells': out.nodes.length });
      svg.toggleAttribute('hidden', empty);
      svg.replaceChildren(...out.nodes);
    }

    draw();
    window.addEventListener(
      'resize',
      debounce(() => {
        if (Math.floor(box.clientWidth) !== drawnWidth) draw();
      }, 150),
    );
  }

  // ---- horizontal bar charts ----------------------------------------------------------

  // rows: {label, sub (indented, lighter), value, text, cls, tipTitle, tip: () => pairs}
  function hbars(host, rows, emptyText) {
    host.replaceChildren();
    if (!rows.length || rows.every((r) => r.value <= 0)) {
      host.append(el('p', { class: 'empty' }, emptyText));
      return;
    }
    const W = Math.max(300, Math.floor(host.clientWidth) || 480);
    const H = 22;
    const LABEL = Math.min(Math.floor(W * 0.36), 170);
    const VALUE = 80;
    const max = rows.reduce((m, r) => Math.max(m, r.value), 0);
    const svg = sv('svg', { width: W, height: rows.length * H, viewBox: `0 0 ${W} ${rows.length * H}`, role: 'img' });
    rows.forEach((r, i) => {
      const g = sv('g', { class: 'row', transform: `translate(0,${i * H})` });
      const indent = r.sub ? 16 : 4;
      g.append(sv('text', { class: r.sub ? 'label sub' : 'label', x: indent, y: H / 2 + 4 }, fit(r.label, LABEL - indent - 6)));
      const bw = r.value > 0 ? Math.max(1, ((W - LABEL - VALUE) * r.value) / max) : 0;
      g.append(sv('rect', { class: r.cls || (r.sub ? 'bar sub' : 'bar'), x: LABEL, y: 3, width: bw.toFixed(2), height: H - 6 }));
      g.append(sv('text', { class: 'value', x: LABEL + bw + 5, y: H / 2 + 4 }, r.text));
      // A transparent band over the row, so the whole row shows the tooltip.
      g.append(sv('rect', { x: 0, y: 0, width: W, height: H, fill: 'transparent' }));
      if (r.tip) withTip(g, r.tipTitle || r.label, r.tip);
      svg.append(g);
    });
    host.append(svg);
  }

  function drawTypes(types) {
    const byMem = (a, b) => num(b[1].memory_bytes) - num(a[1].memory_bytes);
    const entries = Object.entries(obj(types)).map(([k, v]) => [k, obj(v)]).sort(byMem);
    const rows = [];
    for (const [type, t] of entries) {
      rows.push({ label: type, t, title: type });
      const encs = Object.entries(obj(t.encodings)).map(([k, v]) => [k, obj(v)]).sort(byMem);
      for (const [enc, e] of encs) rows.push({ label: enc, sub: true, t: e, title: `${type} · ${enc}` });
    }
    const tip = (t) => () => [
      ['Keys', fmtInt(t.keys)],
      ['Elements', fmtInt(t.elements)],
      ['Memory', fmtBytes(t.memory_bytes)],
      ['Per key', fmtBytes(num(t.keys) > 0 ? num(t.memory_bytes) / num(t.keys) : 0)],
    ];
    const chart = (field, fmt) =>
      rows.map((r) => ({ label: r.label, sub: r.sub, value: num(r.t[field]), text: fmt(r.t[field]), tipTitle: r.title, tip: tip(r.t) }));
    hbars($('types-mem'), chart('memory_bytes', fmtBytes), 'No keys.');
    hbars($('types-keys'), chart('keys', fmtInt), 'No keys.');
  }

  function drawTtl(ttl) {
    const bins = arr(obj(ttl).bins).map(obj);
    const totalKeys = sum(bins, (b) => num(b.keys));
    const cls = (b) => (b.label === 'expired' ? 'bar warn' : b.label === 'no expiry' ? 'bar none' : 'bar');
    const chart = (field, fmt) =>
      bins.map((b) => ({
        label: str(b.label),
        value: num(b[field]),
        text: fmt(b[field]),
        cls: cls(b),
        tip: () => [['Keys', fmtInt(b.keys)], ['Share of keys', fmtPct(b.keys, totalKeys)], ['Memory', fmtBytes(b.memory_bytes)]],
      }));
    hbars($('ttl-keys'), chart('keys', fmtInt), 'No keys.');
    hbars($('ttl-mem'), chart('memory_bytes', fmtBytes), 'No keys.');
  }

  // Power-of-two size bins as INFO KEYSIZES has them: each labelled by its lower bound L
  // and holding sizes from L to 2L - 1 (0 alone for empty strings); only bins with keys.
  function drawSizes(host, binsIn, unit, what) {
    const bins = arr(binsIn).map(obj).filter((x) => typeof x.bin === 'number' && num(x.keys) > 0);
    bins.sort((x, y) => x.bin - y.bin);
    const total = sum(bins, (x) => num(x.keys));
    const rows = bins.map((x) => ({
      label: x.bin === 0 ? '0' : fmtPow2(x.bin, unit),
      value: num(x.keys),
      text: fmtInt(x.keys),
      tipTitle: x.bin <= 1 ? `${fmtInt(x.bin)} ${what}` : `${fmtInt(x.bin)} to ${fmtInt(2 * x.bin - 1)} ${what}`,
      tip: () => [['Keys', fmtInt(x.keys)], ['Share of keys', fmtPct(x.keys, total)]],
    }));
    hbars(host, rows, 'No keys.');
  }

  // ---- tables -------------------------------------------------------------------------

  // columns: {title, cell: row => string | Node, cls: row => class, num, sort: row => number}
  // opts: {rows, empty (text), page (rows per "show more"), sort (the title of the column
  // sorted on at first)}. Rows with a `hay` string can be filtered: .filter(text).
  function table(host, columns, opts) {
    const PAGE = opts.page || Infinity;
    const t = el('table', { class: 'data' });
    const thead = el('thead');
    const tbody = el('tbody');
    const foot = el('div', { class: 'table-foot' });
    const count = el('span', { class: 'count' });
    const more = el('button', { type: 'button', class: 'more' }, 'Show more');
    let sorted = opts.rows.slice();
    let view = sorted;
    let shown = 0;
    let query = '';

    const hr = el('tr');
    const ths = columns.map((c) => {
      const th = el('th', c.num ? { class: 'num', scope: 'col' } : { scope: 'col' });
      if (c.sort) {
        const b = el('button', { type: 'button', title: 'Sort by ' + c.title }, c.title);
        b.addEventListener('click', () => setSort(c));
        th.append(b);
      } else th.textContent = c.title;
      hr.append(th);
      return th;
    });
    thead.append(hr);
    t.append(thead, tbody);

    function addRows(upTo) {
      const frag = document.createDocumentFragment();
      for (; shown < upTo; shown++) {
        const row = view[shown];
        const tr = el('tr', { class: 'row' });
        for (const c of columns) {
          const v = c.cell(row);
          const cls = [c.num ? 'num' : '', c.cls ? c.cls(row) : ''].join(' ').trim();
          const td = el('td', cls ? { class: cls } : null);
          if (v instanceof Node) td.append(v);
          else td.textContent = v;
          tr.append(td);
        }
        frag.append(tr);
      }
      tbody.append(frag);
      const all = opts.rows.length;
      count.textContent = !all
        ? opts.empty
        : `Showing ${fmtInt(shown)} of ${fmtInt(view.length)}` + (view.length !== all ? ` matching (${fmtInt(all)} in all)` : '');
      foot.hidden = all > 0 && !opts.page; // a short table needs no count
      more.hidden = shown >= view.length;
      if (!more.hidden) more.textContent = `Show ${fmtInt(Math.min(PAGE, view.length - shown))} more`;
      make(t, { 'data-shown': shown, 'data-matching': view.length });
    }
    function refresh() {
      view = query ? sorted.filter((r) => r.hay.includes(query)) : sorted;
      tbody.replaceChildren();
      shown = 0;
      addRows(Math.min(view.length, PAGE));
    }
    function setSort(c) {
      sorted = opts.rows.slice().sort((x, y) => c.sort(y) - c.sort(x));
      ths.forEach((th, i) => (columns[i] === c ? th.setAttribute('aria-sort', 'descending') : th.removeAttribute('aria-sort')));
      refresh();
    }
    more.addEventListener('click', () => addRows(Math.min(view.length, shown + PAGE)));
    foot.append(count, more);
    host.replaceChildren(t, foot);
    const initial = columns.find((c) => c.title === opts.sort && c.sort);
    if (initial) setSort(initial);
    else refresh();
    return {
      filter(q) {
        query = q.toLowerCase();
        refresh();
      },
    };
  }

  const keyCell = (row) => row.key.text;
  const keyClass = (row) => (row.key.binary ? 'key binary' : 'key');

  function drawTop(r, params) {
    const now = num(r.now_ms);
    const rows = arr(r.top).map((x, i) => {
      const t = obj(x);
      const key = keyText(t.key);
      return { t, rank: i + 1, key, hay: key.text.toLowerCase() };
    });
    const expiry = (row) => {
      const at = row.t.expire_at_ms;
      if (typeof at !== 'number') return '';
      return fmtDate(at) + (at <= now ? ' (expired)' : ` (in ${fmtSpan(at - now)})`);
    };
    const sortBy = params.get('sort') === 'elements' ? 'Elements' : 'Memory';
    const tbl = table($('top'), [
      { title: '#', num: true, cell: (x) => fmtInt(x.rank) },
      { title: 'DB', num: true, cell: (x) => str(x.t.db) },
      { title: 'Key', cell: keyCell, cls: keyClass },
      { title: 'Type', cell: (x) => str(x.t.type) },
      { title: 'Encoding', cell: (x) => str(x.t.encoding) },
      { title: 'Elements', num: true, cell: (x) => fmtInt(x.t.elements), sort: (x) => num(x.t.elements) },
      { title: 'Memory', num: true, cell: (x) => fmtBytes(x.t.memory_bytes), sort: (x) => num(x.t.memory_bytes) },
      { title: 'Largest element', num: true, cell: (x) => (typeof x.t.largest_element === 'number' ? fmtBytes(x.t.largest_element) : '') },
      { title: 'Expires', cell: expiry },
    ], { rows, empty: 'No keys.', page: 200, sort: sortBy });
    const search = $('search');
    const q = params.get('q');
    if (q) {
      search.value = q;
      tbl.filter(q);
    }
    search.addEventListener('input', debounce(() => tbl.filter(search.value), 150));
  }

  function drawDbs(dbs) {
    const rows = Object.entries(obj(dbs))
      .map(([db, d]) => ({ db, d: obj(d) }))
      .sort((a, b) => Number(a.db) - Number(b.db) || (a.db < b.db ? -1 : 1));
    table($('dbs'), [
      { title: 'DB', num: true, cell: (x) => x.db },
      { title: 'Keys', num: true, cell: (x) => fmtInt(x.d.keys) },
      { title: 'With expiry', num: true, cell: (x) => fmtInt(x.d.expires) },
      { title: 'Expired', num: true, cell: (x) => fmtInt(x.d.expired) },
      { title: 'Memory', num: true, cell: (x) => fmtBytes(x.d.memory_bytes) },
      { title: 'Keyspace overhead', num: true, cell: (x) => fmtBytes(x.d.overhead_bytes) },
    ], { rows, empty: 'No database holds a key.' });
  }

  function drawBig(big) {
    const rows = arr(big).map((x) => {
      const t = obj(x);
      return { t, key: keyText(t.key) };
    });
    table($('big'), [
      { title: 'DB', num: true, cell: (x) => str(x.t.db) },
      { title: 'Key', cell: keyCell, cls: keyClass },
      { title: 'Type', cell: (x) => str(x.t.type) },
      { title: 'Elements', num: true, cell: (x) => fmtInt(x.t.elements), sort: (x) => num(x.t.elements) },
      { title: 'Memory', num: true, cell: (x) => fmtBytes(x.t.memory_bytes), sort: (x) => num(x.t.memory_bytes) },
      { title: 'Commands', num: true, cell: (x) => fmtInt(x.t.commands), sort: (x) => num(x.t.commands) },
    ], { rows, empty: 'No key over the thresholds.', page: 200, sort: 'Memory' });
  }

  // ---- the page -----------------------------------------------------------------------

  // One section failing shows its error there and leaves the others drawn.
  function section(id, draw) {
    try {
      draw();
    } catch (e) {
      recordError(`${id}: ${e && e.stack ? e.stack : e}`);
      const host = $(id);
      if (host) host.append(el('p', { class: 'error' }, 'This part could not be drawn: ' + String(e)));
    }
  }

  let report = {};
  try {
    report = obj(JSON.parse($('report').textContent));
  } catch (e) {
    recordError('the embedded report is not JSON: ' + e);
  }
  const params = new URLSearchParams(location.hash.slice(1));
  section('files', () => drawHeader(report));
  section('sec-prefixes', () => drawIcicle(report.prefixes, params.getAll('zoom')));
  section('sec-types', () => drawTypes(report.types));
  section('sec-ttl', () => drawTtl(report.ttl));
  section('sec-sizes', () => {
    const s = obj(report.sizes);
    drawSizes($('size-elements'), s.elements, false, 'elements');
    drawSizes($('size-bytes'), s.value_bytes, true, 'bytes');
  });
  section('sec-top', () => drawTop(report, params));
  section('sec-dbs', () => drawDbs(report.dbs));
  section('sec-big', () => drawBig(report.big_keys));
  body.setAttribute('data-render-ms', String(Math.round(performance.now())));
  body.setAttribute('data-rendered', '1');
})();
