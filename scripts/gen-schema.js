// Build step: writes schema/nle.schema.json from the one config schema (src/lib/config/schema.ts,
// compiled to dist/). test/sync.test.ts fails when the committed file is out of date.
import {mkdirSync, writeFileSync} from 'node:fs'

const {configJsonSchema} = await import('../dist/lib/config/schema.js')
mkdirSync(new URL('../schema/', import.meta.url), {recursive: true})
writeFileSync(new URL('../schema/nle.schema.json', import.meta.url), JSON.stringify(configJsonSchema(), null, 2) + '\n')
console.log('wrote schema/nle.schema.json')
