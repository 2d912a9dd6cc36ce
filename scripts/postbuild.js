// Build step after `tsc` and `oclif manifest`:
// - writes schema/nle.schema.json from the one config schema (src/lib/config/schema.ts, compiled);
// - writes schema/json/*.schema.json, the schema of each command's --json output (src/cli/results.ts);
// - writes docs/errors.md from the error catalogue (src/lib/*/errors.ts, compiled);
// - sorts oclif.manifest.json's commands by id, so the file does not depend on the order the
//   file system lists src/commands in (CI compares the committed copy byte for byte).
// test/sync.test.ts fails when either committed file is out of date.
import {mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'

const {configJsonSchema} = await import('../dist/lib/config/schema.js')
mkdirSync(new URL('../schema/', import.meta.url), {recursive: true})
writeFileSync(new URL('../schema/nle.schema.json', import.meta.url), JSON.stringify(configJsonSchema(), null, 2) + '\n')

const {jsonSchemaFiles} = await import('../dist/cli/results.js')
const jsonDir = new URL('../schema/json/', import.meta.url)
mkdirSync(jsonDir, {recursive: true})
const files = jsonSchemaFiles()
// A schema of a command that is gone goes with it.
for (const name of readdirSync(jsonDir)) if (!(name in files)) rmSync(new URL(name, jsonDir))
for (const [name, schema] of Object.entries(files)) writeFileSync(new URL(name, jsonDir), JSON.stringify(schema, null, 2) + '\n')

const {renderErrorsDoc} = await import('../dist/lib/errors-doc.js')
writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorsDoc())

const manifestUrl = new URL('../oclif.manifest.json', import.meta.url)
const manifest = JSON.parse(readFileSync(manifestUrl, 'utf8'))
manifest.commands = Object.fromEntries(Object.entries(manifest.commands).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
writeFileSync(manifestUrl, JSON.stringify(manifest, null, 2) + '\n')
console.log(`wrote schema/nle.schema.json, ${Object.keys(files).length} files in schema/json/ and docs/errors.md; sorted oclif.manifest.json`)
