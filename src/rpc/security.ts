// Where a process finds the cluster secret: --secret-file (the CLI puts it in
// LOAM_SECRET_FILE, which child processes inherit) and --insecure (LOAM_INSECURE=1).
import { readFileSync, writeFileSync } from 'node:fs'
import { newSecretText, parseSecret, type Security } from './auth.js'
import { LoamError } from './errors.js'

export const SECRET_FILE_ENV = 'LOAM_SECRET_FILE'
export const INSECURE_ENV = 'LOAM_INSECURE'

let configured: Security | undefined

export function loadSecurity(opts: { secretFile?: string; insecure?: boolean }): Security {
  const file = opts.secretFile
  if (!file) {
    throw new LoamError('invalid-argument', `no cluster secret: pass --secret-file FILE or set ${SECRET_FILE_ENV} (loam cluster init writes one; loam cluster up names its own in its ready file)`)
  }
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error'
    throw new LoamError(code === 'ENOENT' ? 'not-found' : 'permission', `cannot read the cluster secret ${file} (${code}); pass the right file with --secret-file or ${SECRET_FILE_ENV}`)
  }
  return { secret: parseSecret(text, file), encrypt: !opts.insecure }
}

/** This process's security, from the environment unless set with useSecurity(); read once. */
export function processSecurity(): Security {
  configured ??= loadSecurity({ secretFile: process.env[SECRET_FILE_ENV], insecure: isInsecureEnv() })
  return configured
}

export function useSecurity(security: Security): void {
  configured = security
}

export function isInsecureEnv(): boolean {
  const v = process.env[INSECURE_ENV]
  return v !== undefined && v !== '' && v !== '0'
}

/** Writes a new secret file, readable by its owner only; refuses to replace one. */
export function writeSecretFile(file: string): void {
  try {
    writeFileSync(file, newSecretText(), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new LoamError('exists', `${file} exists; a cluster keeps its secret (remove the file first to make a new one)`)
    throw new LoamError('io', `cannot write the cluster secret ${file}: ${code ?? (err as Error).message}`)
  }
}
