#!/usr/bin/env node
import {execute} from '@oclif/core'

// nle targets Node 20. The AWS SDK warns on every run that its releases after January 2027 need
// Node 22; the versions in package-lock.json work on 20, so the notice is noise for users here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

await execute({dir: import.meta.url})
