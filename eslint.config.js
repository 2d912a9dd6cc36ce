// @ts-check
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.d.ts']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {globals: {process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly'}},
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
    },
  },
  {
    // Type-aware rules: a promise nobody awaits or handles is a bug (a lost rejection, a race).
    files: ['**/*.ts', '**/*.tsx'],
    languageOptions: {parserOptions: {projectService: true, tsconfigRootDir: import.meta.dirname}},
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-misused-promises': ['error', {checksVoidReturn: {arguments: false, attributes: false}}],
    },
  },
  {
    // src/lib is the core: no CLI framework or UI imports (see README "Layout").
    files: ['src/lib/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          {group: ['@oclif/*'], message: 'src/lib must not import oclif; put CLI glue in src/cli or src/commands.'},
          {group: ['ink', 'ink-*', 'react'], message: 'src/lib must not import Ink/React; UI lives in src/ui.'},
        ],
      }],
    },
  },
)
