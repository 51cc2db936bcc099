// Builds the console into api/static/console/, which the API serves at /console (api/routers/console.py).
// Every file the page loads is emitted here: nothing is fetched from another origin at run time.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../static/console',
    emptyOutDir: true,
    // Scripts, styles and images as files (the policy allows no inline script or style sheet).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
});
