// Builds the console's single-page app (ui/) into dist/ui, served by the clc under /console/.
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

export default defineConfig({
  root: 'ui',
  base: '/console/',
  plugins: [preact()],
  build: { outDir: '../dist/ui', emptyOutDir: true, target: 'es2022', sourcemap: false, chunkSizeWarningLimit: 200 },
});
