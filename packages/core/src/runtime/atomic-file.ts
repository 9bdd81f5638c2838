/**
 * Whole-file replacement that survives crashes, shared by the files Tapline keeps (the `--once-per-chip` store, the
 * association's token store).
 *
 * The new content goes to a temporary file in the same directory (so that the rename cannot cross file systems),
 * which is written, given its mode, fsynced and renamed over the old file; then the directory is fsynced so that the
 * rename itself is durable. A crash at any point leaves either the old file or the new one, never a mix. A temporary
 * file torn by a crash is never read; its name is {@link atomicTemporaryPrefix} followed by `<pid>.<hex>.tmp`, so an
 * owner of the file can find and remove it.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Which part of {@link replaceFileAtomically} failed. */
export type AtomicReplaceStage = 'write' | 'sync-directory';

/**
 * Thrown by {@link replaceFileAtomically}; callers map it to their own typed error. When `stage` is `write`, the
 * target was left as it was; when it is `sync-directory`, the new content is in place but may not survive a power
 * cut.
 */
export class AtomicReplaceError extends Error {
  constructor(
    readonly stage: AtomicReplaceStage,
    /** The file written (`write`) or the directory synced (`sync-directory`). */
    readonly path: string,
    cause: unknown,
  ) {
    super(`Could not ${stage === 'write' ? 'write' : 'sync the directory'} ${path}${errnoSuffix(cause)}.`, { cause });
    this.name = 'AtomicReplaceError';
  }

  /** The `errno` code of the cause (`ENOSPC`, `EACCES`, …), if it has one. */
  get errno(): string | undefined {
    return errnoCode(this.cause);
  }
}

/** The prefix of the temporary files {@link replaceFileAtomically} creates next to `file`: `.<name>.`. */
export function atomicTemporaryPrefix(file: string): string {
  return `.${basename(file)}.`;
}

/**
 * Replaces `file` with `content`: temporary file (created exclusively with `mode`, then `chmod`ed to it so that the
 * umask cannot loosen it), fsync, rename over `file`, fsync of the directory. The directory must exist. Fails with
 * {@link AtomicReplaceError}; a failed write removes its temporary file.
 */
export async function replaceFileAtomically(file: string, content: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(file);
  const temporary = join(dir, `${atomicTemporaryPrefix(file)}${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx', mode);
    try {
      // Windows keeps only the read-only bit, so chmod there would only be noise.
      if (process.platform !== 'win32') await handle.chmod(mode);
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, file);
  } catch (error) {
    await unlink(temporary).catch(() => undefined);
    throw new AtomicReplaceError('write', file, error);
  }
  await syncDirectory(dir);
}

/** Fsyncs a directory, so that a rename inside it is durable. Fails with {@link AtomicReplaceError}. */
export async function syncDirectory(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync, and its rename is already durable once it returns.
  if (process.platform === 'win32') return;
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (error) {
    // Some file systems do not fsync directories; the rename is then as durable as they make it.
    if (!['EINVAL', 'ENOTSUP', 'EISDIR', 'EBADF'].includes(errnoCode(error) ?? '')) {
      throw new AtomicReplaceError('sync-directory', dir, error);
    }
  } finally {
    await handle?.close();
  }
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function errnoSuffix(error: unknown): string {
  const code = errnoCode(error);
  return code === undefined ? '' : ` (${code})`;
}
