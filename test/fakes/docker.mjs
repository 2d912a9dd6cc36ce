// Fake docker CLI. `docker build` prints the classic builder's progress on stdout and
// "Successfully built/tagged"; `docker image inspect` prints a JSON array of the Engine API's
// ImageInspect objects with 4-space indentation, or `[]` plus "Error: No such image: X" on stderr
// and exit 1 (docker/cli cli/command/image/inspect.go); a missing daemon prints the client's
// "Cannot connect to the Docker daemon" error (docker/cli), exit 1.
// Knobs: NLE_FAKE_STATE, NLE_FAKE_LOG, FAKE_DOCKER_FAIL=build, FAKE_DOCKER_DAEMON=down.
import {createHash} from 'node:crypto'
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {flags, readState, record, writeState} from './lib.mjs'

record('docker')
const [cmd, ...rest] = process.argv.slice(2)

if (cmd === '--version') {
  process.stdout.write('Docker version 25.0.8, build 0bab007\n')
  process.exit(0)
}
if (process.env.FAKE_DOCKER_DAEMON === 'down') {
  process.stderr.write('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n')
  process.exit(1)
}

/** Every file of the context, relative and sorted: what this build was sent (the state file `last-context.json`). */
function treeFiles(dir) {
  const out = []
  const walk = (d, rel) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p, `${rel}${name}/`)
      else out.push(`${rel}${name}`)
    }
  }
  walk(dir, '')
  return out
}

function treeHash(dir) {
  const h = createHash('sha256')
  const walk = (d, rel) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p, `${rel}${name}/`)
      else h.update(`${rel}${name}\0`).update(readFileSync(p))
    }
  }
  walk(dir, '')
  return h.digest('hex')
}

const tagged = (t) => (t.includes(':') ? t : `${t}:latest`)

if (cmd === 'build') {
  const f = flags(rest)
  const context = rest[rest.length - 1]
  if (!existsSync(join(context, f.file ?? 'Dockerfile'))) {
    process.stderr.write(`unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat ${join(context, 'Dockerfile')}: no such file or directory\n`)
    process.exit(1)
  }
  writeState('last-context.json', treeFiles(context))
  process.stdout.write('Sending build context to Docker daemon  4.096kB\nStep 1/9 : FROM node:24-bookworm-slim\n ---> 2b5bc5e5b3e4\n')
  if (process.env.FAKE_DOCKER_FAIL === 'build') {
    process.stdout.write('Step 2/9 : RUN apt-get update && apt-get install -y --no-install-recommends socat\n ---> Running in 5c0e8a1f9d2b\n')
    process.stderr.write("E: Unable to locate package socat\nThe command '/bin/sh -c apt-get update && apt-get install -y --no-install-recommends socat' returned a non-zero code: 100\n")
    process.exit(100)
  }
  const id = `sha256:${treeHash(context)}`
  const images = readState('images.json', {})
  images[tagged(f.tag)] = {
    Id: id,
    RepoTags: [tagged(f.tag)],
    RepoDigests: [],
    Parent: '',
    Comment: '',
    Created: new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000).toISOString(),
    Architecture: 'amd64',
    Os: 'linux',
    Size: 208123456,
    Config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production', 'NLE_SOCKET=/run/nle/server.sock', 'NLE_VSOCK_PORT=5000'],
      Cmd: ['/bin/sh', '/app/start.sh'],
      Entrypoint: null,
      WorkingDir: '/app',
    },
  }
  writeState('images.json', images)
  process.stdout.write(`Successfully built ${id.slice(7, 19)}\nSuccessfully tagged ${tagged(f.tag)}\n`)
  process.exit(0)
}

if (cmd === 'image' && rest[0] === 'inspect') {
  const ref = tagged(rest[1])
  const image = readState('images.json', {})[ref]
  if (!image) {
    process.stdout.write('[]\n')
    process.stderr.write(`Error: No such image: ${rest[1]}\n`)
    process.exit(1)
  }
  process.stdout.write(JSON.stringify([image], null, 4) + '\n')
  process.exit(0)
}

process.stderr.write(`docker: '${cmd}' is not a docker command.\n`)
process.exit(1)
