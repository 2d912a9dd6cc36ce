// Writes docs/errors.md from the error catalogue (also done by `npm run build`, via postbuild.js).
import {writeFileSync} from 'node:fs'

import {renderErrorsDoc} from '../src/lib/errors-doc.js'

writeFileSync(new URL('../docs/errors.md', import.meta.url), renderErrorsDoc())
console.log('wrote docs/errors.md')
