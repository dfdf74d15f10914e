// Builds the plugin the way Girder's own plugins are built: one UMD bundle plus style.css,
// loaded by Girder's web client at run time (it uses the global `girder` object).
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  build: {
    outDir: resolve(here, '../girder_miqa/web_client/dist'),
    emptyOutDir: true,
    sourcemap: !process.env.SKIP_SOURCE_MAPS,
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
    lib: {
      entry: resolve(here, 'src/main.js'),
      name: 'GirderPluginMiqa',
      fileName: 'girder-plugin-miqa',
      formats: ['umd'],
      cssFileName: 'style',
    },
  },
});
