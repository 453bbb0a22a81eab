// Loader of the browser slider in the static book: runs as a classic inline script right after the slider's
// <div> and its <script type="application/json"> state. It builds the minimal anywidget model
// ({get, set, on, off, save_changes, send}) from that state and calls the ES module's render({model, el}).
// The module's text is in the state (`_esm`, as anywidget keeps it) and is imported from a blob: URL, and
// weights come from <script src> files that assign a global, so the page works from file:// as well as
// from a server, without fetch() and without any other host.
(() => {
  const script = document.currentScript;
  const stateNode = script.previousElementSibling;
  const el = stateNode.previousElementSibling;
  const state = JSON.parse(stateNode.textContent);
  const listeners = {};
  const emit = (event, ...args) => (listeners[event] || []).slice().forEach((callback) => callback(...args));
  const store = (window.liveSliderWeights = window.liveSliderWeights || {});
  const root = new URL(document.documentElement.dataset.content_root || state._content_root, document.baseURI);

  function loadWeights(key) {
    const answer = () => emit("msg:custom", { type: "weights", key, ...store[key] }, []);
    if (store[key]) return void setTimeout(answer);
    const tag = document.createElement("script");
    tag.src = new URL(`${state._assets}/${key}.js`, root).href;
    tag.addEventListener("load", answer);
    tag.addEventListener("error", () => {
      el.dataset.status = "error";
      el.append(`The weights file ${tag.src} could not be loaded.`);
    });
    document.head.append(tag);
  }

  const model = {
    get: (name) => state[name],
    set: (name, value) => {
      const old = state[name];
      state[name] = value;
      if (old !== value) emit(`change:${name}`, value);
    },
    on: (event, callback) => void (listeners[event] = listeners[event] || []).push(callback),
    off: (event, callback) => void (listeners[event] = (listeners[event] || []).filter((c) => c !== callback)),
    save_changes: () => {},
    send: (content) => {
      if (content && content.type === "weights") loadWeights(content.key);
    },
  };
  const url = URL.createObjectURL(new Blob([state._esm], { type: "text/javascript" }));
  import(url)
    .then((module) => module.default.render({ model, el }))
    .catch((error) => {
      el.dataset.status = "error";
      el.append(`The live slider failed to start: ${error}`);
      throw error;
    });
})();
