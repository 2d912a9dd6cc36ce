#!/usr/bin/env node
import {execute, settings} from '@oclif/core'

// nle targets Node 20. The AWS SDK warns on every run that its releases after January 2027 need
// Node 22; the versions in package-lock.json work on 20, so the notice is noise for users here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

// This entry runs the compiled dist/ only (bin/dev.js runs src/). Without this, oclif under
// NODE_ENV=test or development on Node 22.6+ (which can strip types) looks for the TypeScript
// source of each command through tsconfig.json and warns on stderr when it finds none.
settings.enableAutoTranspile = false

await execute({dir: import.meta.url})
