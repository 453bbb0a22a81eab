// The ipywidgets HTML manager (embed.js) typesets widget labels with MathJax 2's `MathJax.Hub.Queue` whenever
// `window.MathJax` exists (jupyter-widgets/ipywidgets#3829). The book loads MathJax 3, which has no `Hub`, so every
// widget page threw "Cannot read properties of undefined (reading 'Queue')". This gives MathJax 3 the one
// MathJax 2 call embed.js makes, mapped to MathJax 3's typesetPromise. It must run before the widgets render:
// myst-nb loads it just before embed.js, and it installs itself again once MathJax 3 has replaced its config.
(() => {
  const install = () => {
    const mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub) return;
    mathjax.Hub = {
      Queue: (...jobs) => {
        for (const job of jobs) {
          const element = Array.isArray(job) ? job[2] : null;
          const typeset = window.MathJax && window.MathJax.typesetPromise;
          if (element && typeset) typeset([element]).catch(() => {});
        }
      },
    };
  };
  install();
  document.addEventListener("DOMContentLoaded", install);
  window.addEventListener("load", install);
})();
