import {fileURLToPath} from 'node:url'

/** The nle package root (holds templates/, runtime/, schema/). Same depth from src/lib and dist/lib. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const TEMPLATES_DIR = `${PACKAGE_ROOT}templates`
export const RUNTIME_DIR = `${PACKAGE_ROOT}runtime`
