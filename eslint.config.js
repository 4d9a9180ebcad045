// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js', 'bin/*.mjs'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // A switch without a default must name every case of its union; one with a default says what the rest get.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // Matching control characters is the point where it is used: header values, names and paths refuse them.
      'no-control-regex': 'off',
    },
  },
  {
    // Limits that keep product code easy to change; warnings name the places to split next.
    files: ['lib/**/*.ts', 'sidecar/**/*.ts', 'injector/**/*.ts', 'cli/**/*.ts'],
    rules: {
      complexity: ['warn', 10],
      'max-depth': ['warn', 3],
      'max-statements': ['warn', 20],
      'max-params': ['warn', 4],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['bin/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
