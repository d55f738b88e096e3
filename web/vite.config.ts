import { defineConfig } from "vite";

// sbxd serves the build at /console/ (src/api/console.c); `npm run dev` proxies the API to a local sbxd.
export default defineConfig({
  base: "/console/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: {
    proxy: { "/v1": { target: process.env.SBX_URL ?? "http://127.0.0.1:7070", ws: true } },
  },
});
