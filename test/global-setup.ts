// Integration tests run the compiled CLI (bin/run.js → dist/). Compile once per run so the
// processes they start always run the code under test. The oclif manifest is *not*
// regenerated here: test/manifest.test.ts checks that the committed one is in sync.
import {execFileSync} from 'node:child_process'
import {rmSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url))
  rmSync(`${root}/dist`, {recursive: true, force: true})
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.build.json`], {
    cwd: root,
    stdio: 'inherit',
  })
}
