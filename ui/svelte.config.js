// Svelte compiler options: TypeScript in <script lang="ts"> via the plugin's built-in preprocessing.
import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

export default {
  preprocess: vitePreprocess(),
};
