/**
 * `node --import <this file> entry.js …`: the dev supervisor's children watch their parent before
 * their entry point runs (see ./exit-with-parent.ts), so no entry point needs to know about it.
 */
import {exitWithParent} from './exit-with-parent.js'

exitWithParent()
