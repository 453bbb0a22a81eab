// Loader of the browser slider in the static book. The book build bundles it with the ES module's text into
// _static/live-slider/live-slider.js (helpers.browser_slider.bundle_script); every slider's notebook output is
//   <div class="live-slider-browser"></div> <script type="application/json">state</script> <script src=".../live-slider.js">
// This classic script finds the <div> and the state just before itself, builds the minimal anywidget model
// ({get, set, on, off, save_changes, send}) and calls the module's render({model, el}). The module is imported
// from a blob: URL and the weights come from <script src> files beside this one that assign a global, so the page
// works from file:// as well as from a server, with no fetch() and no other host.
(() => {
  const script = document.currentScript;
  const stateNode = script.previousElementSibling;
  const el = stateNode.previousElementSibling;
  const state = JSON.parse(stateNode.textContent);
  const listeners = {};
  const emit = (event, ...args) => (listeners[event] || []).slice().forEach((callback) => callback(...args));
  const store = (window.liveSliderWeights = window.liveSliderWeights || {});
  const base = script.src;

  function loadWeights(key) {
    const answer = () => emit("msg:custom", { type: "weights", key, ...store[key] }, []);
    if (store[key]) return void setTimeout(answer);
    const tag = document.createElement("script");
    tag.src = new URL(`models/${key}.js`, base).href;
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
  if (!window.liveSliderModule) {
    const url = URL.createObjectURL(new Blob([window.liveSliderESM], { type: "text/javascript" }));
    window.liveSliderModule = import(url);
  }
  window.liveSliderModule
    .then((module) => module.default.render({ model, el }))
    .catch((error) => {
      el.dataset.status = "error";
      el.append(`The live slider failed to start: ${error}`);
      throw error;
    });
})();
