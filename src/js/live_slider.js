// A σ (or median-window) slider that recomputes in the reader's browser: filter, classifier and attack.
//
// Written as an anywidget ES module (`export default { render({ model, el }) }`), so it can move to MyST's
// {anywidget} directive unchanged. In the static book a small loader (src/helpers/browser_slider.py) builds the
// `model` from data embedded in the page. The module reads these traits:
//
//   kind ("gaussian" | "median"), symbol, value, min, max, slider_step, truncate,
//   models: [{key, spec, value, label, accuracy}]  — the defended models of the grid,
//   digits: {data (base64 float32, N×H×W×C), shape, labels}, class_names, step (α), max_steps.
//
// Weights are requested with model.send({type: "weights", key}) and arrive as a "msg:custom" message
// {type: "weights", key, layers, encoding, data}; the loader answers from a script file, a kernel could too.
//
// Everything runs in float64 on the float32 weights. The Gaussian matches scipy.ndimage.gaussian_filter
// (truncate 4.0, mode "reflect": d c b a | a b c d); the median matches scipy.ndimage.median_filter.
// The attack is the paper's: I ← clip(I − α·g/‖g‖₂, 0, 1) until the prediction is the target, g the gradient
// of the cross-entropy to the target. The gradient goes through the Gaussian exactly (the adjoint of the blur);
// through the median it is BPDA (identity backwards). One attack step per animation frame.

const RUNNING = 0, REACHED = 1, STALLED = 2, OUT_OF_STEPS = 3;
const STATUS = ["running", "reached the target", "stalled (zero gradient)", "out of steps"];

// ------------------------------------------------------------------------------------------ decoding

export function base64ToBytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function base64ToFloat32(text) {
  const bytes = base64ToBytes(text);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// "float32-planes-zlib": float32 values (rounded to their top `bits` bits by the exporter) stored as four byte
// planes — the highest byte of every value, then the next, … — and zlib-compressed.
export async function decodeParameters(encoding, data) {
  if (encoding !== "float32-planes-zlib") throw new Error(`unknown weights encoding ${encoding}`);
  const planes = await inflate(typeof data === "string" ? base64ToBytes(data) : new Uint8Array(data));
  const n = planes.length / 4;
  const words = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    words[i] = ((planes[i] << 24) | (planes[n + i] << 16) | (planes[2 * n + i] << 8) | planes[3 * n + i]) >>> 0;
  }
  return new Float32Array(words.buffer);
}

export async function decodeNetwork(message) {
  const flat = await decodeParameters(message.encoding, message.data);
  return message.layers.map((layer) => {
    const out = { ...layer };
    for (const name of ["kernel", "bias"]) {
      if (layer[name]) out[name] = flat.subarray(layer[name].offset, layer[name].offset + layer[name].size);
    }
    return out;
  });
}

// ------------------------------------------------------------------------------------------ filters

export function gaussianKernel1d(sigma, truncate = 4.0) {
  if (sigma === 0) return [1];
  const radius = Math.floor(truncate * sigma + 0.5);
  const weights = [];
  let sum = 0;
  for (let x = -radius; x <= radius; x++) {
    const w = Math.exp(-0.5 * (x / sigma) ** 2);
    weights.push(w);
    sum += w;
  }
  return weights.map((w) => w / sum);
}

export function reflectIndex(i, size) {
  while (i < 0 || i >= size) i = i < 0 ? -i - 1 : 2 * size - i - 1;
  return i;
}

// M (size×size, row-major) with (x·M)[out] = Σ_tap kernel[tap]·x[reflect(out + tap − radius)].
export function blurMatrix(kernel, size) {
  const radius = (kernel.length - 1) / 2;
  const m = new Float64Array(size * size);
  for (let out = 0; out < size; out++) {
    kernel.forEach((w, tap) => { m[reflectIndex(out + tap - radius, size) * size + out] += w; });
  }
  return m;
}

// Blur an H×W×C image (HWC, Float64Array) along W with mw then along H with mh; transpose=true applies the
// adjoint (the same matrices transposed), which is the exact gradient of the blur.
function separable(img, [h, w, c], mw, mh, transpose) {
  const tmp = new Float64Array(img.length), out = new Float64Array(img.length);
  const pass = (src, dst, m, n, along) => {
    for (let a = 0; a < (along === "w" ? h : w); a++) {
      for (let ch = 0; ch < c; ch++) {
        for (let o = 0; o < n; o++) {
          let s = 0;
          for (let i = 0; i < n; i++) {
            const weight = transpose ? m[o * n + i] : m[i * n + o];
            if (weight === 0) continue;
            s += weight * src[along === "w" ? (a * w + i) * c + ch : (i * w + a) * c + ch];
          }
          dst[along === "w" ? (a * w + o) * c + ch : (o * w + a) * c + ch] = s;
        }
      }
    }
  };
  if (!transpose) { pass(img, tmp, mw, w, "w"); pass(tmp, out, mh, h, "h"); }
  else { pass(img, tmp, mh, h, "h"); pass(tmp, out, mw, w, "w"); }
  return out;
}

export function gaussianFilter(img, shape, sigma, { truncate = 4.0, transpose = false } = {}) {
  if (sigma === 0) return Float64Array.from(img);
  const k = gaussianKernel1d(sigma, truncate);
  return separable(img, shape, blurMatrix(k, shape[1]), blurMatrix(k, shape[0]), transpose);
}

export function medianFilter(img, [h, w, c], size) {
  if (size === 1) return Float64Array.from(img);
  const r = (size - 1) / 2, window = new Float64Array(size * size), out = new Float64Array(img.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < c; ch++) {
        let k = 0;
        for (let dy = -r; dy <= r; dy++) {
          const yy = reflectIndex(y + dy, h);
          for (let dx = -r; dx <= r; dx++) window[k++] = img[(yy * w + reflectIndex(x + dx, w)) * c + ch];
        }
        window.sort();
        out[(y * w + x) * c + ch] = window[(size * size - 1) / 2];
      }
    }
  }
  return out;
}

// The filter at the slider's value, and its backward pass (exact for the Gaussian, BPDA for the median).
export function makeFilter(kind, value, shape, truncate = 4.0) {
  if (kind === "gaussian") {
    return {
      forward: (img) => roundFloat32(gaussianFilter(img, shape, value, { truncate })),
      backward: (grad) => gaussianFilter(grad, shape, value, { truncate, transpose: true }),
      gradient: value === 0 ? "exact (no filter)" : "exact: the adjoint of the Gaussian blur",
    };
  }
  return {
    forward: (img) => medianFilter(img, shape, value),
    backward: (grad) => grad,
    gradient: value === 1 ? "exact (no filter)" : "BPDA: the median's backward pass is the identity",
  };
}

// ------------------------------------------------------------------------------------------ network

function conv2dSame(x, [h, w, cin], layer) {
  const [kh, kw, , cout] = layer.kernel_shape, K = layer.kernel, b = layer.bias;
  const top = Math.floor((kh - 1) / 2), left = Math.floor((kw - 1) / 2);
  const y = new Float64Array(h * w * cout);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const o = (i * w + j) * cout;
      for (let co = 0; co < cout; co++) y[o + co] = b ? b[co] : 0;
      for (let di = 0; di < kh; di++) {
        const ii = i + di - top;
        if (ii < 0 || ii >= h) continue;
        for (let dj = 0; dj < kw; dj++) {
          const jj = j + dj - left;
          if (jj < 0 || jj >= w) continue;
          const xo = (ii * w + jj) * cin, ko = (di * kw + dj) * cin * cout;
          for (let ci = 0; ci < cin; ci++) {
            const v = x[xo + ci];
            if (v === 0) continue;
            const kr = ko + ci * cout;
            for (let co = 0; co < cout; co++) y[o + co] += v * K[kr + co];
          }
        }
      }
    }
  }
  return { y, shape: [h, w, cout] };
}

function conv2dSameBackward(gy, [h, w, cin], layer) {
  const [kh, kw, , cout] = layer.kernel_shape, K = layer.kernel;
  const top = Math.floor((kh - 1) / 2), left = Math.floor((kw - 1) / 2);
  const gx = new Float64Array(h * w * cin);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const o = (i * w + j) * cout;
      for (let di = 0; di < kh; di++) {
        const ii = i + di - top;
        if (ii < 0 || ii >= h) continue;
        for (let dj = 0; dj < kw; dj++) {
          const jj = j + dj - left;
          if (jj < 0 || jj >= w) continue;
          const xo = (ii * w + jj) * cin, ko = (di * kw + dj) * cin * cout;
          for (let ci = 0; ci < cin; ci++) {
            const kr = ko + ci * cout;
            let s = 0;
            for (let co = 0; co < cout; co++) s += gy[o + co] * K[kr + co];
            gx[xo + ci] += s;
          }
        }
      }
    }
  }
  return gx;
}

function maxPool(x, [h, w, c], [ph, pw]) {
  const oh = Math.floor(h / ph), ow = Math.floor(w / pw);
  const y = new Float64Array(oh * ow * c), arg = new Int32Array(oh * ow * c);
  for (let i = 0; i < oh; i++) {
    for (let j = 0; j < ow; j++) {
      for (let ch = 0; ch < c; ch++) {
        let best = -Infinity, at = -1;
        for (let di = 0; di < ph; di++) {
          for (let dj = 0; dj < pw; dj++) {
            const k = ((i * ph + di) * w + (j * pw + dj)) * c + ch;
            if (x[k] > best) { best = x[k]; at = k; }
          }
        }
        y[(i * ow + j) * c + ch] = best;
        arg[(i * ow + j) * c + ch] = at;
      }
    }
  }
  return { y, arg, shape: [oh, ow, c] };
}

function dense(x, layer) {
  const [nin, nout] = layer.kernel_shape, K = layer.kernel, b = layer.bias;
  const y = new Float64Array(nout);
  for (let o = 0; o < nout; o++) y[o] = b ? b[o] : 0;
  for (let i = 0; i < nin; i++) {
    const v = x[i];
    if (v === 0) continue;
    const r = i * nout;
    for (let o = 0; o < nout; o++) y[o] += v * K[r + o];
  }
  return y;
}

function denseBackward(gy, layer) {
  const [nin, nout] = layer.kernel_shape, K = layer.kernel;
  const gx = new Float64Array(nin);
  for (let i = 0; i < nin; i++) {
    let s = 0;
    const r = i * nout;
    for (let o = 0; o < nout; o++) s += gy[o] * K[r + o];
    gx[i] = s;
  }
  return gx;
}

function relu(a) {
  for (let i = 0; i < a.length; i++) if (a[i] < 0) a[i] = 0;
  return a;
}

// Keras computes in float32. Rounding every layer's output to float32 makes values that float32 cannot tell
// apart equal here too, so that max-pooling breaks the same ties (the first maximum) as TensorFlow does.
export function roundFloat32(a) {
  for (let i = 0; i < a.length; i++) a[i] = Math.fround(a[i]);
  return a;
}

// Forward pass of the layer list (conv2d "same" stride 1, max_pool, flatten, dense; relu or linear).
// Returns the logits and a tape for backward().
export function forward(layers, image, shape) {
  let x = image, s = shape;
  const tape = [];
  for (const layer of layers) {
    if (layer.type === "conv2d") {
      const { y, shape: out } = conv2dSame(x, s, layer);
      roundFloat32(y);
      if (layer.activation === "relu") relu(y);
      tape.push({ layer, inShape: s, y });
      x = y; s = out;
    } else if (layer.type === "max_pool") {
      const { y, arg, shape: out } = maxPool(x, s, layer.pool_size);
      tape.push({ layer, inShape: s, arg, inLength: x.length });
      x = y; s = out;
    } else if (layer.type === "flatten") {
      tape.push({ layer, inShape: s });
      s = [x.length];
    } else if (layer.type === "dense") {
      const y = roundFloat32(dense(x, layer));
      if (layer.activation === "relu") relu(y);
      tape.push({ layer, y });
      x = y; s = [y.length];
    } else {
      throw new Error(`unsupported layer ${layer.type}`);
    }
  }
  return { logits: x, tape };
}

export function backward(tape, gradLogits) {
  let g = gradLogits;
  for (let k = tape.length - 1; k >= 0; k--) {
    const { layer } = tape[k];
    if (layer.type === "dense" || layer.type === "conv2d") {
      if (layer.activation === "relu") {
        g = Float64Array.from(g);
        const y = tape[k].y;
        for (let i = 0; i < g.length; i++) if (!(y[i] > 0)) g[i] = 0;
      }
      g = layer.type === "dense" ? denseBackward(g, layer) : conv2dSameBackward(g, tape[k].inShape, layer);
    } else if (layer.type === "max_pool") {
      const gx = new Float64Array(tape[k].inLength), arg = tape[k].arg;
      for (let i = 0; i < g.length; i++) gx[arg[i]] += g[i];
      g = gx;
    }
  }
  return g;
}

export function softmax(logits) {
  const top = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

export function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// One iteration of the paper's attack, as helpers.attack's engine does it: stop if the target is reached,
// or max_steps were taken, or the gradient is zero; otherwise I ← clip(I − α·g/‖g‖₂, 0, 1).
export function attackIteration(state, { layers, filter, shape, target, step, maxSteps }) {
  const filtered = filter.forward(state.x);
  const { logits, tape } = forward(layers, filtered, shape);
  state.logits = logits;
  if (argmax(logits) === target) { state.status = REACHED; return state; }
  if (state.steps >= maxSteps) { state.status = OUT_OF_STEPS; return state; }
  const p = softmax(logits);
  p[target] -= 1; // d(cross-entropy to target)/d(logits)
  const g = filter.backward(backward(tape, p));
  let norm = 0;
  for (let i = 0; i < g.length; i++) norm += g[i] * g[i];
  norm = Math.sqrt(norm);
  if (!(norm > 0)) { state.status = STALLED; return state; }
  for (let i = 0; i < g.length; i++) state.x[i] = Math.fround(Math.min(1, Math.max(0, state.x[i] - step * g[i] / norm)));
  state.steps += 1;
  return state;
}

export function l2Distance(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s);
}

// ------------------------------------------------------------------------------------------ drawing

function drawImage(canvas, img, [h, w, c], { perturbation = false, amplify = 10 } = {}) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), data = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) {
      let v = img[i * c + (c === 3 ? k : 0)];
      if (perturbation) v = 0.5 + amplify * v;
      data.data[4 * i + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
    data.data[4 * i + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
}

function element(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function barChart(classNames) {
  const root = element("div", { class: "ls-bars", style: "display:grid;grid-template-columns:auto 140px auto;gap:1px 6px;font-size:12px;align-items:center" });
  const rows = classNames.map((name) => {
    const bar = element("div", { style: "height:10px;background:#4c72b0;width:0" });
    const value = element("span", { style: "font-variant-numeric:tabular-nums" });
    root.append(element("span", { text: name }), element("div", { style: "background:#eee" }, [bar]), value);
    return { bar, value };
  });
  return {
    root,
    update(probs, highlight = {}) {
      probs.forEach((p, i) => {
        rows[i].bar.style.width = `${(100 * p).toFixed(1)}%`;
        rows[i].bar.style.background = i === highlight.target ? "#c44e52" : i === highlight.top ? "#55a868" : "#4c72b0";
        rows[i].value.textContent = `${(100 * p).toFixed(1)} %`;
      });
    },
  };
}

const CANVAS_STYLE = "width:112px;height:112px;image-rendering:pixelated;border:1px solid #ccc;display:block";

function figure(caption) {
  const canvas = element("canvas", { style: CANVAS_STYLE });
  const label = element("figcaption", { text: caption, style: "font-size:12px;max-width:130px" });
  return { canvas, label, root: element("figure", { style: "margin:0 8px 0 0" }, [canvas, label]) };
}

// ------------------------------------------------------------------------------------------ widget

function nearestModel(models, value) {
  return models.reduce((best, m) => {
    const d = Math.abs(m.value - value), bd = Math.abs(best.value - value);
    return d < bd || (d === bd && m.value < best.value) ? m : best;
  });
}

function render({ model, el }) {
  const kind = model.get("kind"), symbol = model.get("symbol"), models = model.get("models");
  const classNames = model.get("class_names"), digits = model.get("digits"), truncate = model.get("truncate") ?? 4.0;
  const shape = digits.shape.slice(1), size = shape[0] * shape[1] * shape[2];
  const pixels = base64ToFloat32(digits.data);
  const images = digits.labels.map((_, i) => Float64Array.from(pixels.subarray(i * size, (i + 1) * size)));
  const networks = new Map(); // key → Promise of the decoded layer list
  const waiting = new Map(); // key → resolve
  let selected = 0;

  model.on("msg:custom", (msg) => {
    if (msg && msg.type === "weights" && waiting.has(msg.key)) waiting.get(msg.key)(decodeNetwork(msg));
  });
  function network(key) {
    if (!networks.has(key)) {
      networks.set(key, new Promise((resolve) => { waiting.set(key, resolve); model.send({ type: "weights", key }); }).then((p) => p));
    }
    return networks.get(key);
  }

  // --- layout
  const range = element("input", { type: "range", class: "ls-range", min: model.get("min"), max: model.get("max"), step: model.get("slider_step"), value: model.get("value"), style: "width:320px", "aria-label": symbol });
  const readout = element("output", { class: "ls-value", style: "font-variant-numeric:tabular-nums;min-width:3em;display:inline-block" });
  const picker = element("span", { class: "ls-digits" });
  const info = element("div", { class: "ls-model", style: "font-size:13px;margin:4px 0" });
  const original = figure("the digit"), filtered = figure("");
  const bars = barChart(classNames);
  const prediction = element("div", { class: "ls-prediction", style: "font-size:13px" });
  const targetSelect = element("select", { class: "ls-target", "aria-label": "target class" });
  const run = element("button", { class: "ls-run", type: "button", text: "Attack" });
  const stop = element("button", { class: "ls-stop", type: "button", text: "Stop", disabled: "" });
  const adversarial = figure("adversarial"), perturbation = figure("perturbation ×10");
  const attackInfo = element("div", { class: "ls-attack-status", style: "font-size:13px;max-width:360px" });
  digits.labels.forEach((label, i) => {
    const thumb = element("canvas", { style: "width:28px;height:28px;image-rendering:pixelated;cursor:pointer;border:2px solid transparent;margin-right:2px", title: `digit ${i} (label ${classNames[label]})`, "data-index": String(i) });
    drawImage(thumb, images[i], shape);
    thumb.addEventListener("click", () => {
      selected = i;
      targetChosen = false;
      picker.querySelectorAll("canvas").forEach((c, k) => { c.style.borderColor = k === i ? "#4c72b0" : "transparent"; });
      model.set("selected", i);
      model.save_changes();
      refresh();
    });
    picker.append(thumb);
  });
  picker.querySelector("canvas").style.borderColor = "#4c72b0";
  classNames.forEach((name, i) => targetSelect.append(element("option", { value: String(i), text: name })));
  // The menu starts on a wrong class, so that the first Attack shows an attack: the most likely class other than
  // the prediction, once the model has predicted (until the reader picks a target; a new digit starts over).
  let targetChosen = false;
  targetSelect.value = String((digits.labels[selected] + 1) % classNames.length);
  targetSelect.addEventListener("change", () => { targetChosen = true; });
  el.append(element("div", { class: "ls-root", style: "border:1px solid #ddd;border-radius:4px;padding:8px;margin:8px 0" }, [
    element("div", { style: "display:flex;gap:12px;align-items:center;flex-wrap:wrap" }, [
      element("label", {}, [`${symbol} `, range]), readout, element("span", { text: "digit:", style: "font-size:13px" }), picker]),
    info,
    element("div", { style: "display:flex;gap:8px;align-items:flex-start;flex-wrap:wrap" }, [original.root, filtered.root, element("div", {}, [bars.root, prediction])]),
    element("div", { style: "margin-top:8px;display:flex;gap:8px;align-items:center;flex-wrap:wrap;font-size:13px" }, [
      "Attack towards", targetSelect, run, stop, element("span", { class: "ls-gradient" })]),
    element("div", { style: "display:flex;gap:8px;align-items:flex-start;flex-wrap:wrap;margin-top:4px" }, [adversarial.root, perturbation.root, attackInfo]),
  ]));

  // --- state shared with tests (read-only view) and the loop
  const view = { value: Number(range.value), spec: null, key: null, logits: [], filtered: [], attack: null, status: "loading" };
  el.liveSlider = view;
  let version = 0;

  function valueOf() {
    const v = Number(range.value);
    return kind === "median" ? Math.max(1, 2 * Math.round((v - 1) / 2) + 1) : v;
  }

  async function refresh() {
    const value = valueOf(), mine = ++version, chosen = nearestModel(models, value);
    const filter = makeFilter(kind, value, shape, truncate);
    readout.textContent = kind === "median" ? `${value}×${value}` : value.toFixed(2);
    el.dataset.value = String(value);
    el.dataset.status = view.status = "loading";
    filtered.label.textContent = `${symbol} = ${kind === "median" ? value : value.toFixed(2)}`;
    info.textContent = `Classifier: the CNN trained with ${chosen.label} (nearest in the grid ${models.map((m) => m.value).join(", ")}; clean test accuracy ${(100 * chosen.accuracy).toFixed(1)} %), fed the digit filtered with ${symbol} = ${value}. Loading its weights…`;
    const outputs = images.map((img) => filter.forward(img));
    drawImage(original.canvas, images[selected], shape);
    drawImage(filtered.canvas, outputs[selected], shape);
    const layers = await network(chosen.key);
    if (mine !== version) return; // the slider moved on meanwhile
    info.textContent = info.textContent.replace(" Loading its weights…", "");
    const logits = outputs.map((img) => forward(layers, img, shape).logits);
    const probs = softmax(logits[selected]), top = argmax(probs);
    bars.update(probs, { top });
    if (!targetChosen) targetSelect.value = String(argmax(probs.map((p, i) => (i === top ? -1 : p))));
    prediction.textContent = `Prediction: ${classNames[top]} (${(100 * probs[top]).toFixed(1)} %), true label ${classNames[digits.labels[selected]]}.`;
    Object.assign(view, { value, spec: chosen.spec, key: chosen.key, logits: logits.map((l) => Array.from(l)), filtered: outputs.map((o) => Array.from(o)), selected });
    el.dataset.status = view.status = "ready";
    el.dataset.spec = chosen.spec;
  }

  // --- the attack: one step per animation frame, so the page (and the slider) stay responsive
  let attack = null;
  async function startAttack() {
    const value = valueOf(), chosen = nearestModel(models, value), target = Number(targetSelect.value), index = selected;
    const layers = await network(chosen.key);
    const filter = makeFilter(kind, value, shape, truncate), image = images[index];
    const state = { x: Float64Array.from(image), steps: 0, status: RUNNING, logits: null };
    const settings = { layers, filter, shape, target, step: model.get("step"), maxSteps: model.get("max_steps") };
    const record = { value, spec: chosen.spec, key: chosen.key, index, target, gradient: filter.gradient, l2: [0], steps: 0, status: "running" };
    attack = { cancelled: false };
    const mine = attack;
    view.attack = record;
    el.dataset.attack = "running";
    run.setAttribute("disabled", ""); stop.removeAttribute("disabled");
    el.querySelector(".ls-gradient").textContent = `gradient through the filter: ${filter.gradient}`;
    const frame = () => {
      if (mine.cancelled) { finish("stopped"); return; }
      attackIteration(state, settings);
      record.steps = state.steps;
      if (state.status === RUNNING) record.l2.push(l2Distance(state.x, image));
      const delta = state.x.map((v, i) => v - image[i]);
      drawImage(adversarial.canvas, state.x, shape);
      drawImage(perturbation.canvas, delta, shape, { perturbation: true });
      const top = argmax(state.logits);
      attackInfo.textContent = `${symbol} = ${value}, ${chosen.label} model, target ${classNames[target]}: step ${state.steps}, ‖δ‖₂ = ${record.l2[record.l2.length - 1].toFixed(3)}, prediction ${classNames[top]}.`;
      if (state.status === RUNNING) requestAnimationFrame(frame);
      else finish(STATUS[state.status]);
    };
    const finish = (how) => {
      record.status = how;
      attackInfo.textContent += ` Finished: ${how}.`;
      el.dataset.attack = how;
      run.removeAttribute("disabled"); stop.setAttribute("disabled", "");
      if (attack === mine) attack = null;
    };
    requestAnimationFrame(frame);
  }

  // Recompute at most once per animation frame, however fast the slider moves.
  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; refresh(); });
  };
  range.addEventListener("input", () => { model.set("value", valueOf()); model.save_changes(); schedule(); });
  model.on("change:value", () => { if (Number(model.get("value")) !== valueOf()) { range.value = model.get("value"); schedule(); } });
  run.addEventListener("click", () => { if (!attack) startAttack(); });
  stop.addEventListener("click", () => { if (attack) attack.cancelled = true; });
  refresh();
  return () => { if (attack) attack.cancelled = true; };
}

export default { render };
