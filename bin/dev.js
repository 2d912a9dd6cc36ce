#!/usr/bin/env -S node --import tsx --no-warnings
// Runs the CLI straight from src/ (no build). For development only.
import {execute} from '@oclif/core'

await execute({development: true, dir: import.meta.url})
