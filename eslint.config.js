// @ts-check
/**
 * ESLint 10 flat config for the whole Tapline monorepo.
 *
 * ESLint 10 looks the config up from each linted file's directory upwards, so `eslint src test` run inside a package
 * (what every package's `lint` script does) finds this file, and every glob below is relative to the repository root.
 *
 * Layers, bottom to top (docs/adr, README "Architecture"):
 *   @tapline/core  <-  @tapline/test-fixtures, @tapline/driver-*  <-  @tapline/cli, @tapline/agent
 * The import boundaries at the end of this file enforce that order with the built-in `no-restricted-imports`.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const root = import.meta.dirname;

/** The directories that are linted, relative to the repository root. */
const LINT_ROOTS = [
  'packages/*/src',
  'packages/*/test',
  'packages/*/bin',
  'test-fixtures/src',
  'test-fixtures/test',
  'bench',
];
const TS = '**/*.{ts,mts,cts,tsx}';
const JS = '**/*.{js,mjs,cjs}';
const within = (/** @type {string[]} */ dirs, /** @type {string} */ glob) => dirs.map((dir) => `${dir}/${glob}`);

const TS_FILES = within(LINT_ROOTS, TS);
const JS_FILES = [...within(LINT_ROOTS, JS), 'eslint.config.js'];
/** Test code: the test folders plus any colocated `*.test.ts` / `*.spec.ts`. */
const TEST_FILES = [
  ...within(['packages/*/test', 'test-fixtures/test'], '**/*'),
  '**/*.{test,spec}.{ts,mts,cts,tsx,js,mjs}',
];

// ---------------------------------------------------------------------------------------------------------------
// Import boundaries
// ---------------------------------------------------------------------------------------------------------------

/** The package folder names that exist now (new drivers are picked up without editing this file). */
const packageDirs = readdirSync(join(root, 'packages'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);
const driverDirs = packageDirs.filter((name) => name.startsWith('driver-'));
const siblingNames = [...packageDirs, 'test-fixtures'].map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

/**
 * @typedef {{ regex: string, message: string }} Restriction
 */

/** Rules for every linted file. */
const BASE = /** @type {Restriction[]} */ ([
  {
    regex: '^@tapline/(?:cli|agent)(?:/|$)',
    message:
      'Nothing imports the frontends (@tapline/cli, @tapline/agent): they are the top layer. Move shared code into @tapline/core.',
  },
  {
    regex: '^@tapline/[^/]+/(?:src|dist|test|lib)(?:/|$)',
    message:
      'Import a workspace package through its public entry (`@tapline/core`, or a declared subpath such as `@tapline/core/testing`), never its src/dist files.',
  },
]);

/** Rules for files inside a package: never climb out of it with a relative path. */
const CONTAINED = /** @type {Restriction[]} */ ([
  {
    regex: '^(?:\\.\\./)+(?!\\.\\.?/)[^/]+/src(?:/|$)',
    message:
      "A relative import must not climb out of its package into another package's src; depend on the package (`@tapline/…`) instead.",
  },
  {
    regex: `^(?:\\.\\./){2,}(?:packages/)?(?:${siblingNames.join('|')})(?!/src(?:/|$))(?:/|$)`,
    message:
      'A relative import must not climb out of its package into another workspace package; depend on it by name (`@tapline/…`) instead.',
  },
]);

const CORE = /** @type {Restriction[]} */ ([
  {
    regex: '^@tapline/',
    message:
      '@tapline/core is the bottom layer: it imports no other @tapline package (use a relative import inside core).',
  },
]);

const CORE_MODEL = /** @type {Restriction[]} */ ([
  {
    regex: '^(?:\\.\\./)+(?:pipeline|drivers)(?:/|$)',
    message:
      'The reader model (core/src/model) is the contract layer: it must not import the pipeline or the drivers. Depend the other way round.',
  },
  {
    regex: '^(?:\\.\\./)+runtime/container(?:\\.js)?$',
    message:
      'The reader model must not import the composition root (runtime/container); only frontends and tests compose.',
  },
  {
    regex: '^(?:\\.\\./)+transport/[^/]*-native(?:\\.js)?$',
    message:
      'The reader model must not import a native transport (transport/*-native): contracts stay free of native bindings. Use the port interfaces in transport/pcsc.ts and transport/usb.ts.',
  },
]);

const TEST_FIXTURES = /** @type {Restriction[]} */ ([
  {
    regex: '^@tapline/(?!core(?:/|$))',
    message: '@tapline/test-fixtures sits directly on @tapline/core: it may import only @tapline/core.',
  },
]);

/** @param {string} self the driver's folder name, e.g. `driver-acr122` (its own package name stays importable). */
function driverRules(self, /** @type {boolean} */ inSrc) {
  /** @type {Restriction[]} */
  const rules = [
    {
      regex: `^@tapline/driver-(?!${self.slice('driver-'.length)}(?:/|$))`,
      message: 'Drivers are independent plugins: a driver never imports another driver.',
    },
    {
      regex: '^@tapline/(?!core(?:/|$)|driver-|test-fixtures(?:/|$)|cli(?:/|$)|agent(?:/|$))',
      message: 'A driver may import only @tapline/core (and @tapline/core/testing in its tests).',
    },
  ];
  if (inSrc) {
    rules.push(
      {
        regex: '^@tapline/test-fixtures(?:/|$)',
        message: "@tapline/test-fixtures is for tests: a driver's src must not depend on it.",
      },
      {
        regex: '^@tapline/core/testing(?:/|$)',
        message: "@tapline/core/testing holds test doubles: use it in the driver's tests, never in its src.",
      },
    );
  }
  return rules;
}

/**
 * One config object restricting imports for `files`. ESLint replaces (does not merge) a rule's options when a later
 * object matches the same file, so every object carries the complete list for its zone; zones go from general to
 * specific.
 */
function boundary(/** @type {string} */ name, /** @type {string[]} */ files, /** @type {Restriction[][]} */ ...lists) {
  return {
    name: `tapline/boundaries/${name}`,
    files,
    rules: {
      'no-restricted-imports': ['error', { patterns: lists.flat() }],
    },
  };
}

const ALL_CODE = [...TS_FILES, ...JS_FILES];
const pkg = (/** @type {string} */ dir) => [`${dir}/**/*`];

const boundaries = [
  boundary('all', ALL_CODE, BASE),
  boundary('frontends', [...pkg('packages/cli'), ...pkg('packages/agent')], BASE, CONTAINED),
  boundary('core', pkg('packages/core'), BASE, CONTAINED, CORE),
  boundary('core-model', pkg('packages/core/src/model'), BASE, CONTAINED, CORE, CORE_MODEL),
  boundary('test-fixtures', pkg('test-fixtures'), BASE, CONTAINED, TEST_FIXTURES),
  ...driverDirs.flatMap((dir) => [
    boundary(`${dir}`, pkg(`packages/${dir}`), BASE, CONTAINED, driverRules(dir, false)),
    boundary(`${dir}/src`, pkg(`packages/${dir}/src`), BASE, CONTAINED, driverRules(dir, true)),
    boundary(
      `${dir}/colocated-tests`,
      [`packages/${dir}/src/**/*.{test,spec}.{ts,mts,cts,tsx,js,mjs}`],
      BASE,
      CONTAINED,
      driverRules(dir, false),
    ),
  ]),
];

// ---------------------------------------------------------------------------------------------------------------
// The config
// ---------------------------------------------------------------------------------------------------------------

export default defineConfig([
  globalIgnores(
    [
      '**/dist/',
      '**/node_modules/',
      '**/coverage/',
      '**/.turbo/',
      '**/*.tsbuildinfo',
      '**/oclif.manifest.json',
      'bench/results/',
      'docs/examples/',
    ],
    'tapline/ignores',
  ),

  {
    name: 'tapline/options',
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },

  // JavaScript: bin scripts, bench, this file.
  {
    name: 'tapline/javascript',
    files: JS_FILES,
    extends: [js.configs.recommended],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    rules: {
      'no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },

  // TypeScript, type-aware.
  {
    name: 'tapline/typescript',
    files: TS_FILES,
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { ...globals.node },
      parserOptions: {
        projectService: true,
        tsconfigRootDir: root,
      },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': [
        'error',
        // `typeof import('x')` stays allowed: it types a module that is imported lazily (ADR 0004).
        { prefer: 'type-imports', fixStyle: 'inline-type-imports', disallowTypeAnnotations: false },
      ],
      // With verbatimModuleSyntax, `import { type A } from 'x'` keeps a side-effect `import 'x'`.
      '@typescript-eslint/no-import-type-side-effects': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          args: 'after-used',
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
    },
  },

  // Test TypeScript is not part of any package's tsconfig.json (those include only src), so the project service
  // cannot see it; each package's own tsconfig.test.json (src + test, noEmit) provides the types instead. One object
  // per package, so that a package whose tsconfig.test.json has no inputs yet cannot break the others' lint.
  ...[...packageDirs.map((dir) => `packages/${dir}`), 'test-fixtures'].map((dir) => ({
    name: `tapline/typescript-tests/${dir}`,
    files: within([`${dir}/test`], TS),
    languageOptions: {
      parserOptions: {
        projectService: false,
        project: `./${dir}/tsconfig.test.json`,
        tsconfigRootDir: root,
      },
    },
  })),

  // Tests: relax what fights with mocks, `expect` and hand-built fixtures. Floating promises stay errors
  // (a forgotten `await expect(...).rejects` is a silently passing test).
  {
    name: 'tapline/tests',
    files: TEST_FILES,
    languageOptions: {
      globals: { ...globals.vitest },
    },
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-empty-function': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/only-throw-error': 'off',
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
    },
  },

  // Outside packages and test-fixtures there is no tsconfig (bench): lint without types.
  {
    name: 'tapline/untyped',
    files: within(['bench'], TS),
    extends: [tseslint.configs.disableTypeChecked],
  },

  ...boundaries,
]);
