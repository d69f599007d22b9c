// The version every daemon reports and `loam --version` prints: package.json's, read once.
import { readFileSync } from 'node:fs'

const PACKAGE_JSON = new URL('../../../package.json', import.meta.url)

export const LOAM_VERSION = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string }).version
