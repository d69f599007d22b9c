// Loam's fixed copy of fuse-native 2.2.6's binding (MIT, see LICENSE and README.md).
// Linux and libfuse 2.9 only.

#define FUSE_USE_VERSION 29

#include <uv.h>
#include <node_api.h>
#include <napi-macros.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fuse.h>
#include <fuse_opt.h>
#include <fuse_common.h>
#include <fuse_lowlevel.h>

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

// Opcodes: index into the JS handler array. Keep in sync with index.js.

static const uint32_t op_init = 0;
static const uint32_t op_error = 1;
static const uint32_t op_access = 2;
static const uint32_t op_statfs = 3;
static const uint32_t op_fgetattr = 4;
static const uint32_t op_getattr = 5;
static const uint32_t op_flush = 6;
static const uint32_t op_fsync = 7;
static const uint32_t op_fsyncdir = 8;
static const uint32_t op_readdir = 9;
static const uint32_t op_truncate = 10;
static const uint32_t op_ftruncate = 11;
static const uint32_t op_utimens = 12;
static const uint32_t op_readlink = 13;
static const uint32_t op_chown = 14;
static const uint32_t op_chmod = 15;
static const uint32_t op_mknod = 16;
static const uint32_t op_setxattr = 17;
static const uint32_t op_getxattr = 18;
static const uint32_t op_listxattr = 19;
static const uint32_t op_removexattr = 20;
static const uint32_t op_open = 21;
static const uint32_t op_opendir = 22;
static const uint32_t op_read = 23;
static const uint32_t op_write = 24;
static const uint32_t op_release = 25;
static const uint32_t op_releasedir = 26;
static const uint32_t op_create = 27;
static const uint32_t op_unlink = 28;
static const uint32_t op_rename = 29;
static const uint32_t op_link = 30;
static const uint32_t op_symlink = 31;
static const uint32_t op_mkdir = 32;
static const uint32_t op_rmdir = 33;

#define OP_COUNT 35

// Layout of the Float64Arrays built by index.js (getStatArray / getStatfsArray).
#define STAT_FIELDS 13
#define STATFS_FIELDS 11

// Arguments every dispatch passes before the op's own: self, opcode, uid, gid, pid.
#define DISPATCH_HEAD 5

// Data structures

typedef struct fuse_thread_locals fuse_thread_locals_t;

typedef struct {
  napi_env env;
  uv_loop_t *loop;
  pthread_t thread;
  pthread_attr_t attr;
  napi_ref ctx;
  napi_ref malloc;

  // Operation handlers
  napi_ref handlers[OP_COUNT];

  struct fuse *fuse;
  struct fuse_chan *ch;
  char mnt[PATH_MAX];
  int mounted;

  uv_async_t async;
  uv_mutex_t mut;
  uv_sem_t sem;

  // Hand-off of a freshly allocated locals struct from the JS thread (under mut).
  fuse_thread_locals_t *new_locals;
  // Locals of exited FUSE worker threads, reused so thread churn in fuse_loop_mt
  // does not leak a JS buffer and a uv_async_t per thread (under mut).
  fuse_thread_locals_t *free_locals;
} fuse_thread_t;

struct fuse_thread_locals {
  napi_ref self;

  // Opcode
  uint32_t op;
  void (*op_fn)(fuse_thread_locals_t *, fuse_thread_t *);

  // Caller identity, read from fuse_get_context() on the FUSE thread as the op enters.
  uid_t ctx_uid;
  gid_t ctx_gid;
  pid_t ctx_pid;

  // Payloads
  const char *path;
  const char *dest;
  char *linkname;
  struct fuse_file_info *info;
  const void *buf;
  off_t offset;
  size_t len;
  mode_t mode;
  dev_t dev;
  uid_t uid;
  gid_t gid;
  struct timespec tv[2];
  int32_t res;

  // Extended attributes
  const char *name;
  const char *value;
  char *list;
  size_t size;
  int flags;

  // Stat + Statfs
  struct stat *stat;
  struct statvfs *statvfs;

  // Readdir
  fuse_fill_dir_t readdir_filler;

  // Internal bookkeeping
  fuse_thread_t *fuse;
  fuse_thread_locals_t *next_free;
  uv_sem_t sem;
  uv_async_t async;
};

static pthread_key_t thread_locals_key;
static fuse_thread_locals_t* get_thread_locals (void);

// Helpers

static void capture_context (fuse_thread_locals_t *l) {
  struct fuse_context *fc = fuse_get_context();
  l->ctx_uid = fc->uid;
  l->ctx_gid = fc->gid;
  l->ctx_pid = fc->pid;
}

static void ms_to_timespec (struct timespec *ts, double ms) {
  if (!isfinite(ms)) ms = 0;
  double sec = floor(ms / 1000);
  double nsec = round((ms - sec * 1000) * 1e6);
  if (nsec >= 1e9) {
    sec += 1;
    nsec -= 1e9;
  }
  ts->tv_sec = (time_t) sec;
  ts->tv_nsec = (long) nsec;
}

// utimens times: milliseconds since the epoch, or the strings "now" / "omit" for
// UTIME_NOW / UTIME_OMIT, which libfuse 2.9 passes through from the kernel unresolved.
static void create_time (napi_env env, const struct timespec *ts, napi_value *out) {
  if (ts->tv_nsec == UTIME_NOW) {
    napi_create_string_utf8(env, "now", NAPI_AUTO_LENGTH, out);
  } else if (ts->tv_nsec == UTIME_OMIT) {
    napi_create_string_utf8(env, "omit", NAPI_AUTO_LENGTH, out);
  } else {
    napi_create_double(env, (double) ts->tv_sec * 1000 + (double) ts->tv_nsec / 1e6, out);
  }
}

static void create_fh (napi_env env, struct fuse_file_info *info, napi_value *out) {
  napi_create_int64(env, info != NULL ? (int64_t) info->fh : 0, out);
}

// A Buffer over FUSE-owned memory; it is detached in the signal so JS cannot touch it after.
static void create_external (napi_env env, const void *data, size_t len, napi_value *out) {
  if (len == 0 || data == NULL) {
    napi_create_buffer(env, 0, NULL, out);
  } else {
    napi_create_external_buffer(env, len, (void *) data, NULL, NULL, out);
  }
}

static void detach (napi_env env, napi_value ab, size_t len) {
  bool is_ab = false;
  if (len == 0 || napi_is_arraybuffer(env, ab, &is_ab) != napi_ok || !is_ab) return;
  napi_detach_arraybuffer(env, ab);
}

static double *get_doubles (napi_env env, napi_value val, size_t min_len) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  bool is_ta = false;
  if (napi_is_typedarray(env, val, &is_ta) != napi_ok || !is_ta) return NULL;
  if (napi_get_typedarray_info(env, val, &type, &length, &data, NULL, NULL) != napi_ok) return NULL;
  if (type != napi_float64_array || length < min_len) return NULL;
  return (double *) data;
}

static int64_t get_int64 (napi_env env, napi_value val, int64_t def) {
  int64_t n;
  if (napi_get_value_int64(env, val, &n) != napi_ok) return def;
  return n;
}

static void populate_stat (const double *d, struct stat *stat) {
  memset(stat, 0, sizeof(*stat));
  stat->st_mode = (mode_t) d[0];
  stat->st_uid = (uid_t) d[1];
  stat->st_gid = (gid_t) d[2];
  stat->st_size = (off_t) d[3];
  stat->st_dev = (dev_t) d[4];
  stat->st_nlink = (nlink_t) d[5];
  stat->st_ino = (ino_t) d[6];
  stat->st_rdev = (dev_t) d[7];
  stat->st_blksize = (blksize_t) d[8];
  stat->st_blocks = (blkcnt_t) d[9];
  ms_to_timespec(&stat->st_atim, d[10]);
  ms_to_timespec(&stat->st_mtim, d[11]);
  ms_to_timespec(&stat->st_ctim, d[12]);
}

static void populate_statvfs (const double *d, struct statvfs *statvfs) {
  memset(statvfs, 0, sizeof(*statvfs));
  statvfs->f_bsize = (unsigned long) d[0];
  statvfs->f_frsize = (unsigned long) d[1];
  statvfs->f_blocks = (fsblkcnt_t) d[2];
  statvfs->f_bfree = (fsblkcnt_t) d[3];
  statvfs->f_bavail = (fsblkcnt_t) d[4];
  statvfs->f_files = (fsfilcnt_t) d[5];
  statvfs->f_ffree = (fsfilcnt_t) d[6];
  statvfs->f_favail = (fsfilcnt_t) d[7];
  statvfs->f_fsid = (unsigned long) d[8];
  statvfs->f_flag = (unsigned long) d[9];
  statvfs->f_namemax = (unsigned long) d[10];
}

// Macros

#define FUSE_NATIVE_CALLBACK(fn, blk)\
  napi_env env = ft->env;\
  napi_handle_scope scope;\
  napi_open_handle_scope(env, &scope);\
  napi_value ctx;\
  napi_get_reference_value(env, ft->ctx, &ctx);\
  napi_value callback;\
  napi_get_reference_value(env, fn, &callback);\
  blk\
  napi_close_handle_scope(env, scope);

// Runs on a FUSE thread: park the request in the thread's locals, wake the JS thread and
// wait for the JS signal.
#define FUSE_NATIVE_HANDLER(name, blk)\
  fuse_thread_locals_t *l = get_thread_locals();\
  if (l == NULL) return -EIO;\
  capture_context(l);\
  l->op = op_##name;\
  l->op_fn = fuse_native_dispatch_##name;\
  blk\
  uv_async_send(&(l->async));\
  uv_sem_wait(&(l->sem));\
  return l->res;

// The JS handler is called as (self, opcode, uid, gid, pid, ...args); args[i] below.
#define FUSE_METHOD(name, callbackArgs, signalArgs, signature, callBlk, callbackBlk, signalBlk)\
  static void fuse_native_dispatch_##name (fuse_thread_locals_t* l, fuse_thread_t* ft) {\
    FUSE_NATIVE_CALLBACK(ft->handlers[op_##name], {\
      napi_value argv[callbackArgs + DISPATCH_HEAD];\
      napi_value *args = argv + DISPATCH_HEAD;\
      (void) args;\
      napi_get_reference_value(env, l->self, &(argv[0]));\
      napi_create_uint32(env, l->op, &(argv[1]));\
      napi_create_uint32(env, (uint32_t) l->ctx_uid, &(argv[2]));\
      napi_create_uint32(env, (uint32_t) l->ctx_gid, &(argv[3]));\
      napi_create_int32(env, (int32_t) l->ctx_pid, &(argv[4]));\
      callbackBlk\
      NAPI_MAKE_CALLBACK(env, NULL, ctx, callback, callbackArgs + DISPATCH_HEAD, argv, NULL)\
    })\
  }\
  NAPI_METHOD(fuse_native_signal_##name) {\
    napi_value argv[signalArgs + 2];\
    size_t argc = signalArgs + 2;\
    NAPI_STATUS_THROWS(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))\
    NAPI_ARGV_BUFFER_CAST(fuse_thread_locals_t *, l, 0);\
    int32_t res;\
    if (argc < 2 || napi_get_value_int32(env, argv[1], &res) != napi_ok) res = -EIO;\
    signalBlk\
    l->res = res;\
    uv_sem_post(&(l->sem));\
    return NULL;\
  }\
  static int fuse_native_##name signature {\
    FUSE_NATIVE_HANDLER(name, callBlk)\
  }

#define FUSE_METHOD_VOID(name, callbackArgs, signature, callBlk, callbackBlk)\
  FUSE_METHOD(name, callbackArgs, 0, signature, callBlk, callbackBlk, {})

#define PATH_ARG(i) napi_create_string_utf8(env, l->path, NAPI_AUTO_LENGTH, &(args[i]));

// Methods. In signal blocks argv[2...] are what index.js passes after the result code;
// they are only read when the result is a success.

FUSE_METHOD(statfs, 1, 1, (const char * path, struct statvfs *statvfs), {
  l->path = path;
  l->statvfs = statvfs;
}, {
  PATH_ARG(0)
}, {
  if (res >= 0) {
    const double *d = argc > 2 ? get_doubles(env, argv[2], STATFS_FIELDS) : NULL;
    if (d == NULL) res = -EIO;
    else populate_statvfs(d, l->statvfs);
  }
})

FUSE_METHOD(getattr, 1, 1, (const char *path, struct stat *stat), {
  l->path = path;
  l->stat = stat;
}, {
  PATH_ARG(0)
}, {
  if (res >= 0) {
    const double *d = argc > 2 ? get_doubles(env, argv[2], STAT_FIELDS) : NULL;
    if (d == NULL) res = -EIO;
    else populate_stat(d, l->stat);
  }
})

FUSE_METHOD(fgetattr, 2, 1, (const char *path, struct stat *stat, struct fuse_file_info *info), {
  l->path = path;
  l->stat = stat;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
}, {
  if (res >= 0) {
    const double *d = argc > 2 ? get_doubles(env, argv[2], STAT_FIELDS) : NULL;
    if (d == NULL) res = -EIO;
    else populate_stat(d, l->stat);
  }
})

FUSE_METHOD_VOID(access, 2, (const char *path, int mode), {
  l->path = path;
  l->mode = mode;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
})

#define SET_FH_FROM_SIGNAL\
  if (res >= 0 && argc > 2) {\
    int64_t fd = get_int64(env, argv[2], 0);\
    if (fd != 0) l->info->fh = (uint64_t) fd;\
  }

FUSE_METHOD(open, 2, 1, (const char *path, struct fuse_file_info *info), {
  l->path = path;
  l->info = info;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->info != NULL ? (uint32_t) l->info->flags : 0, &(args[1]));
}, {
  SET_FH_FROM_SIGNAL
})

// fuse-native passed (path, fh, flags) here but its JS read (path, flags): pass flags only.
FUSE_METHOD(opendir, 2, 1, (const char *path, struct fuse_file_info *info), {
  l->path = path;
  l->info = info;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->info != NULL ? (uint32_t) l->info->flags : 0, &(args[1]));
}, {
  SET_FH_FROM_SIGNAL
})

FUSE_METHOD(create, 2, 1, (const char *path, mode_t mode, struct fuse_file_info *info), {
  l->path = path;
  l->mode = mode;
  l->info = info;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
}, {
  SET_FH_FROM_SIGNAL
})

// fuse-native passed atime twice (mtime lost) and ignored UTIME_NOW / UTIME_OMIT.
FUSE_METHOD_VOID(utimens, 3, (const char *path, const struct timespec tv[2]), {
  l->path = path;
  l->tv[0] = tv[0];
  l->tv[1] = tv[1];
}, {
  PATH_ARG(0)
  create_time(env, &(l->tv[0]), &(args[1]));
  create_time(env, &(l->tv[1]), &(args[2]));
})

FUSE_METHOD_VOID(release, 2, (const char *path, struct fuse_file_info *info), {
  l->path = path;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
})

FUSE_METHOD_VOID(releasedir, 2, (const char *path, struct fuse_file_info *info), {
  l->path = path;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
})

FUSE_METHOD(read, 5, 1, (const char *path, char *buf, size_t len, off_t offset, struct fuse_file_info *info), {
  l->path = path;
  l->buf = buf;
  l->len = len;
  l->offset = offset;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
  create_external(env, l->buf, l->len, &(args[2]));
  napi_create_int64(env, (int64_t) l->len, &(args[3]));
  napi_create_int64(env, (int64_t) l->offset, &(args[4]));
}, {
  if (argc > 2) detach(env, argv[2], l->len);
  if (res > (int32_t) l->len) res = (int32_t) l->len;
})

FUSE_METHOD(write, 5, 1, (const char *path, const char *buf, size_t len, off_t offset, struct fuse_file_info *info), {
  l->path = path;
  l->buf = buf;
  l->len = len;
  l->offset = offset;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
  create_external(env, l->buf, l->len, &(args[2]));
  napi_create_int64(env, (int64_t) l->len, &(args[3]));
  napi_create_int64(env, (int64_t) l->offset, &(args[4]));
}, {
  if (argc > 2) detach(env, argv[2], l->len);
  if (res > (int32_t) l->len) res = (int32_t) l->len;
})

FUSE_METHOD(readdir, 1, 2, (const char *path, void *buf, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *info), {
  l->buf = buf;
  l->path = path;
  l->offset = offset;
  l->info = info;
  l->readdir_filler = filler;
}, {
  PATH_ARG(0)
}, {
  if (res >= 0 && argc > 3) {
    napi_value raw_names = argv[2];
    napi_value raw_stats = argv[3];
    uint32_t names_length = 0;
    uint32_t stats_length = 0;
    napi_get_array_length(env, raw_names, &names_length);
    napi_get_array_length(env, raw_stats, &stats_length);
    int with_stats = names_length == stats_length;
    char name[NAME_MAX + 2];

    for (uint32_t i = 0; i < names_length; i++) {
      napi_value raw_name;
      size_t name_len;
      if (napi_get_element(env, raw_names, i, &raw_name) != napi_ok) break;
      if (napi_get_value_string_utf8(env, raw_name, name, sizeof(name), &name_len) != napi_ok) continue;
      if (name_len > NAME_MAX) continue;

      struct stat st;
      struct stat *stp = NULL;
      if (with_stats) {
        napi_value raw_stat;
        if (napi_get_element(env, raw_stats, i, &raw_stat) == napi_ok) {
          const double *d = get_doubles(env, raw_stat, STAT_FIELDS);
          if (d != NULL) {
            populate_stat(d, &st);
            stp = &st;
          }
        }
      }
      if (l->readdir_filler((char *) l->buf, name, stp, 0) == 1) break;
    }
  }
})

FUSE_METHOD(setxattr, 5, 1, (const char *path, const char *name, const char *value, size_t size, int flags), {
  l->path = path;
  l->name = name;
  l->value = value;
  l->size = size;
  l->flags = flags;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->name, NAPI_AUTO_LENGTH, &(args[1]));
  create_external(env, l->value, l->size, &(args[2]));
  napi_create_uint32(env, 0, &(args[3])); // position: macOS only, kept for fuse-native's API
  napi_create_int32(env, l->flags, &(args[4]));
}, {
  if (argc > 2) detach(env, argv[2], l->size);
})

FUSE_METHOD(getxattr, 4, 1, (const char *path, const char *name, char *value, size_t size), {
  l->path = path;
  l->name = name;
  l->value = value;
  l->size = size;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->name, NAPI_AUTO_LENGTH, &(args[1]));
  create_external(env, l->value, l->size, &(args[2]));
  napi_create_uint32(env, 0, &(args[3]));
}, {
  if (argc > 2) detach(env, argv[2], l->size);
  if (l->size > 0 && res > (int32_t) l->size) res = -ERANGE;
})

FUSE_METHOD(listxattr, 2, 1, (const char *path, char *list, size_t size), {
  l->path = path;
  l->list = list;
  l->size = size;
}, {
  PATH_ARG(0)
  create_external(env, l->list, l->size, &(args[1]));
}, {
  if (argc > 2) detach(env, argv[2], l->size);
  if (l->size > 0 && res > (int32_t) l->size) res = -ERANGE;
})

FUSE_METHOD_VOID(removexattr, 2, (const char *path, const char *name), {
  l->path = path;
  l->name = name;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->name, NAPI_AUTO_LENGTH, &(args[1]));
})

FUSE_METHOD_VOID(flush, 2, (const char *path, struct fuse_file_info *info), {
  l->path = path;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
})

FUSE_METHOD_VOID(fsync, 3, (const char *path, int datasync, struct fuse_file_info *info), {
  l->path = path;
  l->mode = datasync;
  l->info = info;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
  create_fh(env, l->info, &(args[2]));
})

FUSE_METHOD_VOID(fsyncdir, 3, (const char *path, int datasync, struct fuse_file_info *info), {
  l->path = path;
  l->mode = datasync;
  l->info = info;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
  create_fh(env, l->info, &(args[2]));
})

FUSE_METHOD_VOID(truncate, 2, (const char *path, off_t size), {
  l->path = path;
  l->offset = size;
}, {
  PATH_ARG(0)
  napi_create_int64(env, (int64_t) l->offset, &(args[1]));
})

FUSE_METHOD_VOID(ftruncate, 3, (const char *path, off_t size, struct fuse_file_info *info), {
  l->path = path;
  l->offset = size;
  l->info = info;
}, {
  PATH_ARG(0)
  create_fh(env, l->info, &(args[1]));
  napi_create_int64(env, (int64_t) l->offset, &(args[2]));
})

FUSE_METHOD(readlink, 1, 1, (const char *path, char *linkname, size_t len), {
  l->path = path;
  l->linkname = linkname;
  l->len = len;
}, {
  PATH_ARG(0)
}, {
  if (res >= 0) {
    size_t n;
    if (argc < 3 || l->len == 0 || napi_get_value_string_utf8(env, argv[2], l->linkname, l->len, &n) != napi_ok) res = -EIO;
  }
})

FUSE_METHOD_VOID(chown, 3, (const char *path, uid_t uid, gid_t gid), {
  l->path = path;
  l->uid = uid;
  l->gid = gid;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->uid, &(args[1]));
  napi_create_uint32(env, l->gid, &(args[2]));
})

FUSE_METHOD_VOID(chmod, 2, (const char *path, mode_t mode), {
  l->path = path;
  l->mode = mode;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
})

FUSE_METHOD_VOID(mknod, 3, (const char *path, mode_t mode, dev_t dev), {
  l->path = path;
  l->mode = mode;
  l->dev = dev;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
  napi_create_uint32(env, (uint32_t) l->dev, &(args[2]));
})

FUSE_METHOD_VOID(unlink, 1, (const char *path), {
  l->path = path;
}, {
  PATH_ARG(0)
})

FUSE_METHOD_VOID(rename, 2, (const char *path, const char *dest), {
  l->path = path;
  l->dest = dest;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->dest, NAPI_AUTO_LENGTH, &(args[1]));
})

FUSE_METHOD_VOID(link, 2, (const char *path, const char *dest), {
  l->path = path;
  l->dest = dest;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->dest, NAPI_AUTO_LENGTH, &(args[1]));
})

// libfuse: symlink(target, linkpath); JS gets (target, linkpath) as in fuse-native.
FUSE_METHOD_VOID(symlink, 2, (const char *path, const char *dest), {
  l->path = path;
  l->dest = dest;
}, {
  PATH_ARG(0)
  napi_create_string_utf8(env, l->dest, NAPI_AUTO_LENGTH, &(args[1]));
})

FUSE_METHOD_VOID(mkdir, 2, (const char *path, mode_t mode), {
  l->path = path;
  l->mode = mode;
}, {
  PATH_ARG(0)
  napi_create_uint32(env, l->mode, &(args[1]));
})

FUSE_METHOD_VOID(rmdir, 1, (const char *path), {
  l->path = path;
}, {
  PATH_ARG(0)
})

static void fuse_native_dispatch_init (fuse_thread_locals_t* l, fuse_thread_t* ft) {
  FUSE_NATIVE_CALLBACK(ft->handlers[op_init], {
    napi_value argv[DISPATCH_HEAD];
    napi_get_reference_value(env, l->self, &(argv[0]));
    napi_create_uint32(env, l->op, &(argv[1]));
    napi_create_uint32(env, (uint32_t) l->ctx_uid, &(argv[2]));
    napi_create_uint32(env, (uint32_t) l->ctx_gid, &(argv[3]));
    napi_create_int32(env, (int32_t) l->ctx_pid, &(argv[4]));
    NAPI_MAKE_CALLBACK(env, NULL, ctx, callback, DISPATCH_HEAD, argv, NULL)
  })
}

NAPI_METHOD(fuse_native_signal_init) {
  napi_value argv[2];
  size_t argc = 2;
  NAPI_STATUS_THROWS(napi_get_cb_info(env, info, &argc, argv, NULL, NULL))
  NAPI_ARGV_BUFFER_CAST(fuse_thread_locals_t *, l, 0);
  int32_t res;
  if (argc < 2 || napi_get_value_int32(env, argv[1], &res) != napi_ok) res = -EIO;
  l->res = res;
  uv_sem_post(&(l->sem));
  return NULL;
}

static void * fuse_native_init (struct fuse_conn_info *conn) {
  fuse_thread_t *ft = (fuse_thread_t *) fuse_get_context()->private_data;
  fuse_thread_locals_t *l = get_thread_locals();
  if (l == NULL) return ft;

  capture_context(l);
  l->op = op_init;
  l->op_fn = fuse_native_dispatch_init;

  uv_async_send(&(l->async));
  uv_sem_wait(&(l->sem));

  // Becomes fuse_get_context()->private_data for every later op.
  return ft;
}

// Top-level dispatcher (JS thread)

static void fuse_native_dispatch (uv_async_t* handle) {
  fuse_thread_locals_t *l = (fuse_thread_locals_t *) handle->data;
  l->op_fn(l, l->fuse);
}

// JS thread: allocate a locals struct inside a JS Buffer for a new FUSE thread.
static void fuse_native_async_init (uv_async_t* handle) {
  fuse_thread_t *ft = (fuse_thread_t *) handle->data;
  fuse_thread_locals_t *l = NULL;

  FUSE_NATIVE_CALLBACK(ft->malloc, {
    napi_value argv[1];
    napi_create_uint32(env, (uint32_t) sizeof(fuse_thread_locals_t), &(argv[0]));

    napi_value buf;
    if (napi_make_callback(env, NULL, ctx, callback, 1, argv, &buf) == napi_ok) {
      size_t l_len = 0;
      if (napi_get_buffer_info(env, buf, (void **) &l, &l_len) != napi_ok || l_len < sizeof(fuse_thread_locals_t)) {
        l = NULL;
      } else {
        memset(l, 0, sizeof(fuse_thread_locals_t));
        napi_create_reference(env, buf, 1, &(l->self));
      }
    }
  })

  if (l != NULL) {
    if (uv_async_init(ft->loop, &(l->async), (uv_async_cb) fuse_native_dispatch) < 0) {
      l = NULL;
    } else {
      uv_unref((uv_handle_t *) &(l->async));
      uv_sem_init(&(l->sem), 0);
      l->async.data = l;
      l->fuse = ft;
    }
  }

  ft->new_locals = l;
  uv_sem_post(&(ft->sem));
}

// FUSE thread exit: give its locals back to the mount for the next thread. trylock: a
// worker cancelled by fuse_loop_mt's teardown inside get_thread_locals still holds mut.
static void thread_locals_destroy (void *data) {
  fuse_thread_locals_t *l = (fuse_thread_locals_t *) data;
  fuse_thread_t *ft = l->fuse;
  if (uv_mutex_trylock(&(ft->mut)) != 0) return;
  l->next_free = ft->free_locals;
  ft->free_locals = l;
  uv_mutex_unlock(&(ft->mut));
}

static fuse_thread_locals_t* get_thread_locals (void) {
  void *data = pthread_getspecific(thread_locals_key);
  if (data != NULL) return (fuse_thread_locals_t *) data;

  struct fuse_context *ctx = fuse_get_context();
  fuse_thread_t *ft = (fuse_thread_t *) ctx->private_data;

  uv_mutex_lock(&(ft->mut));
  fuse_thread_locals_t *l = ft->free_locals;
  if (l != NULL) {
    ft->free_locals = l->next_free;
    l->next_free = NULL;
  } else {
    // Ask the JS thread to allocate one; the mutex serialises use of ft->async.
    uv_async_send(&(ft->async));
    uv_sem_wait(&(ft->sem));
    l = ft->new_locals;
    ft->new_locals = NULL;
  }
  uv_mutex_unlock(&(ft->mut));

  if (l != NULL) pthread_setspecific(thread_locals_key, (void *) l);
  return l;
}

static void* start_fuse_thread (void *data) {
  fuse_thread_t *ft = (fuse_thread_t *) data;
  fuse_loop_mt(ft->fuse);

  // fuse_unmount polls the channel first and does nothing if the kernel already dropped it.
  fuse_unmount(ft->mnt, ft->ch);
  fuse_destroy(ft->fuse);

  return NULL;
}

// mount(mnt, args: string[], threadBuf, self, malloc, handlers, implemented: Uint32Array)
NAPI_METHOD(fuse_native_mount) {
  NAPI_ARGV(7)

  NAPI_ARGV_UTF8(mnt, PATH_MAX, 0);
  napi_value raw_args = argv[1];
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 2);
  NAPI_ARGV_BUFFER_CAST(uint32_t *, implemented, 6)

  if (ft_len < sizeof(fuse_thread_t) || implemented_len < OP_COUNT * sizeof(uint32_t)) {
    napi_throw_error(env, "EINVAL", "fuse: bad mount buffers");
    return NULL;
  }

  struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
  if (fuse_opt_add_arg(&args, "loam-fuse") != 0) {
    napi_throw_error(env, "ENOMEM", "fuse: out of memory");
    return NULL;
  }

  uint32_t raw_args_len = 0;
  napi_get_array_length(env, raw_args, &raw_args_len);
  for (uint32_t i = 0; i < raw_args_len; i++) {
    napi_value raw;
    size_t len;
    napi_get_element(env, raw_args, i, &raw);
    if (napi_get_value_string_utf8(env, raw, NULL, 0, &len) != napi_ok) {
      fuse_opt_free_args(&args);
      napi_throw_error(env, "EINVAL", "fuse: arguments must be strings");
      return NULL;
    }
    char *arg = malloc(len + 1);
    if (arg == NULL) {
      fuse_opt_free_args(&args);
      napi_throw_error(env, "ENOMEM", "fuse: out of memory");
      return NULL;
    }
    napi_get_value_string_utf8(env, raw, arg, len + 1, &len);
    int err = fuse_opt_add_arg(&args, arg);
    free(arg);
    if (err != 0) {
      fuse_opt_free_args(&args);
      napi_throw_error(env, "ENOMEM", "fuse: out of memory");
      return NULL;
    }
  }

  memset(ft, 0, sizeof(fuse_thread_t));

  struct fuse_operations ops = { 0 };
  if (implemented[op_access]) ops.access = fuse_native_access;
  if (implemented[op_truncate]) ops.truncate = fuse_native_truncate;
  if (implemented[op_ftruncate]) ops.ftruncate = fuse_native_ftruncate;
  if (implemented[op_getattr]) ops.getattr = fuse_native_getattr;
  if (implemented[op_fgetattr]) ops.fgetattr = fuse_native_fgetattr;
  if (implemented[op_flush]) ops.flush = fuse_native_flush;
  if (implemented[op_fsync]) ops.fsync = fuse_native_fsync;
  if (implemented[op_fsyncdir]) ops.fsyncdir = fuse_native_fsyncdir;
  if (implemented[op_readdir]) ops.readdir = fuse_native_readdir;
  if (implemented[op_readlink]) ops.readlink = fuse_native_readlink;
  if (implemented[op_chown]) ops.chown = fuse_native_chown;
  if (implemented[op_chmod]) ops.chmod = fuse_native_chmod;
  if (implemented[op_mknod]) ops.mknod = fuse_native_mknod;
  if (implemented[op_setxattr]) ops.setxattr = fuse_native_setxattr;
  if (implemented[op_getxattr]) ops.getxattr = fuse_native_getxattr;
  if (implemented[op_listxattr]) ops.listxattr = fuse_native_listxattr;
  if (implemented[op_removexattr]) ops.removexattr = fuse_native_removexattr;
  if (implemented[op_statfs]) ops.statfs = fuse_native_statfs;
  if (implemented[op_open]) ops.open = fuse_native_open;
  if (implemented[op_opendir]) ops.opendir = fuse_native_opendir;
  if (implemented[op_read]) ops.read = fuse_native_read;
  if (implemented[op_write]) ops.write = fuse_native_write;
  if (implemented[op_release]) ops.release = fuse_native_release;
  if (implemented[op_releasedir]) ops.releasedir = fuse_native_releasedir;
  if (implemented[op_create]) ops.create = fuse_native_create;
  if (implemented[op_utimens]) ops.utimens = fuse_native_utimens;
  if (implemented[op_unlink]) ops.unlink = fuse_native_unlink;
  if (implemented[op_rename]) ops.rename = fuse_native_rename;
  if (implemented[op_link]) ops.link = fuse_native_link;
  if (implemented[op_symlink]) ops.symlink = fuse_native_symlink;
  if (implemented[op_mkdir]) ops.mkdir = fuse_native_mkdir;
  if (implemented[op_rmdir]) ops.rmdir = fuse_native_rmdir;
  // Always set: init routes private_data and signals the JS mount callback.
  ops.init = fuse_native_init;
  // Without this libfuse 2.9 calls utimens only when both times are set (so `touch -m`
  // never reached the fs) and resolves UTIME_NOW to kernel-supplied times.
  ops.flag_utime_omit_ok = 1;

  // Same sequence as libfuse's own fuse_setup(): mount, then parse library options.
  struct fuse_chan *ch = fuse_mount(mnt, &args);
  if (ch == NULL) {
    fuse_opt_free_args(&args);
    napi_throw_error(env, "EFUSEMOUNT", "fuse: mount failed (see stderr)");
    return NULL;
  }

  struct fuse *fuse = fuse_new(ch, &args, &ops, sizeof(struct fuse_operations), ft);
  fuse_opt_free_args(&args);
  if (fuse == NULL) {
    // fuse-native left the mount behind here.
    fuse_unmount(mnt, ch);
    napi_throw_error(env, "EFUSEOPTS", "fuse: fuse_new failed, probably an unknown or invalid option (see stderr)");
    return NULL;
  }

  ft->env = env;
  if (napi_get_uv_event_loop(env, &(ft->loop)) != napi_ok) ft->loop = uv_default_loop();
  napi_create_reference(env, argv[3], 1, &(ft->ctx));
  napi_create_reference(env, argv[4], 1, &(ft->malloc));

  napi_value handlers = argv[5];
  for (int i = 0; i < OP_COUNT; i++) {
    napi_value handler;
    napi_valuetype type = napi_undefined;
    ft->handlers[i] = NULL;
    if (napi_get_element(env, handlers, i, &handler) == napi_ok && napi_typeof(env, handler, &type) == napi_ok && type == napi_function) {
      napi_create_reference(env, handler, 1, &(ft->handlers[i]));
    }
  }

  uv_mutex_init(&(ft->mut));
  uv_sem_init(&(ft->sem), 0);

  snprintf(ft->mnt, sizeof(ft->mnt), "%s", mnt);
  ft->fuse = fuse;
  ft->ch = ch;
  ft->mounted = 1;

  int err = uv_async_init(ft->loop, &(ft->async), (uv_async_cb) fuse_native_async_init);
  if (err < 0) {
    fuse_unmount(mnt, ch);
    fuse_destroy(fuse);
    napi_throw_error(env, uv_err_name(err), uv_strerror(err));
    return NULL;
  }
  ft->async.data = ft;

  pthread_attr_init(&(ft->attr));
  if (pthread_create(&(ft->thread), &(ft->attr), start_fuse_thread, ft) != 0) {
    uv_close((uv_handle_t *) &(ft->async), NULL);
    fuse_unmount(mnt, ch);
    fuse_destroy(fuse);
    napi_throw_error(env, "EAGAIN", "fuse: could not start the FUSE thread");
    return NULL;
  }

  return NULL;
}

NAPI_METHOD(fuse_native_unmount) {
  NAPI_ARGV(2)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_t *, ft, 1);

  // The FUSE thread ends by itself once the kernel drops the (lazily unmounted)
  // connection; joining could block while files are still open. Stop holding the loop.
  if (ft_len >= sizeof(fuse_thread_t) && ft->mounted) {
    uv_unref((uv_handle_t *) &(ft->async));
    ft->mounted = 0;
  }

  return NULL;
}

NAPI_INIT() {
  pthread_key_create(&(thread_locals_key), thread_locals_destroy);

  NAPI_EXPORT_SIZEOF(fuse_thread_t)

  NAPI_EXPORT_FUNCTION(fuse_native_mount)
  NAPI_EXPORT_FUNCTION(fuse_native_unmount)

  NAPI_EXPORT_FUNCTION(fuse_native_signal_init)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_access)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_statfs)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_fgetattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_getattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_flush)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_fsync)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_fsyncdir)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_readdir)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_truncate)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_ftruncate)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_utimens)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_readlink)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_chown)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_chmod)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_mknod)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_setxattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_getxattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_listxattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_removexattr)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_open)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_opendir)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_read)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_write)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_release)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_releasedir)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_create)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_unlink)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_rename)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_link)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_symlink)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_mkdir)
  NAPI_EXPORT_FUNCTION(fuse_native_signal_rmdir)

  NAPI_EXPORT_UINT32(op_init)
  NAPI_EXPORT_UINT32(op_error)
  NAPI_EXPORT_UINT32(op_access)
  NAPI_EXPORT_UINT32(op_statfs)
  NAPI_EXPORT_UINT32(op_fgetattr)
  NAPI_EXPORT_UINT32(op_getattr)
  NAPI_EXPORT_UINT32(op_flush)
  NAPI_EXPORT_UINT32(op_fsync)
  NAPI_EXPORT_UINT32(op_fsyncdir)
  NAPI_EXPORT_UINT32(op_readdir)
  NAPI_EXPORT_UINT32(op_truncate)
  NAPI_EXPORT_UINT32(op_ftruncate)
  NAPI_EXPORT_UINT32(op_utimens)
  NAPI_EXPORT_UINT32(op_readlink)
  NAPI_EXPORT_UINT32(op_chown)
  NAPI_EXPORT_UINT32(op_chmod)
  NAPI_EXPORT_UINT32(op_mknod)
  NAPI_EXPORT_UINT32(op_setxattr)
  NAPI_EXPORT_UINT32(op_getxattr)
  NAPI_EXPORT_UINT32(op_listxattr)
  NAPI_EXPORT_UINT32(op_removexattr)
  NAPI_EXPORT_UINT32(op_open)
  NAPI_EXPORT_UINT32(op_opendir)
  NAPI_EXPORT_UINT32(op_read)
  NAPI_EXPORT_UINT32(op_write)
  NAPI_EXPORT_UINT32(op_release)
  NAPI_EXPORT_UINT32(op_releasedir)
  NAPI_EXPORT_UINT32(op_create)
  NAPI_EXPORT_UINT32(op_unlink)
  NAPI_EXPORT_UINT32(op_rename)
  NAPI_EXPORT_UINT32(op_link)
  NAPI_EXPORT_UINT32(op_symlink)
  NAPI_EXPORT_UINT32(op_mkdir)
  NAPI_EXPORT_UINT32(op_rmdir)
}
