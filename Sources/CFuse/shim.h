#ifndef CRMFS_CFUSE_SHIM_H
#define CRMFS_CFUSE_SHIM_H
// libfuse 3 low-level API, at the 3.12 interface level.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <stddef.h>
#include <sys/stat.h>
#include <errno.h>

// Bitfields of fuse_file_info, set through functions so Swift never depends on their layout.
static inline void crmfs_fi_set_keep_cache(struct fuse_file_info *fi, int on) { fi->keep_cache = on ? 1 : 0; }
static inline void crmfs_fi_set_direct_io(struct fuse_file_info *fi, int on) { fi->direct_io = on ? 1 : 0; }
static inline void crmfs_fi_set_cache_readdir(struct fuse_file_info *fi, int on) { fi->cache_readdir = on ? 1 : 0; }
static inline void crmfs_fi_set_nonseekable(struct fuse_file_info *fi, int on) { fi->nonseekable = on ? 1 : 0; }

static inline struct fuse_args crmfs_args_init(void) {
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    return args;
}

// Capabilities, as plain values for Swift.
static inline unsigned crmfs_cap_readdirplus(void) { return FUSE_CAP_READDIRPLUS; }
static inline unsigned crmfs_cap_readdirplus_auto(void) { return FUSE_CAP_READDIRPLUS_AUTO; }
static inline unsigned crmfs_cap_auto_inval_data(void) { return FUSE_CAP_AUTO_INVAL_DATA; }
static inline unsigned crmfs_cap_async_read(void) { return FUSE_CAP_ASYNC_READ; }
static inline unsigned crmfs_cap_splice_write(void) { return FUSE_CAP_SPLICE_WRITE; }
static inline unsigned crmfs_cap_cache_symlinks(void) { return FUSE_CAP_CACHE_SYMLINKS; }
// Replies to a read with bytes of an open file: libfuse splices them into /dev/fuse, no copy in user space.
static inline int crmfs_reply_from_fd(fuse_req_t req, int fd, off_t pos, size_t size) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = pos;
    return fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static inline unsigned crmfs_cap_async_dio(void) { return FUSE_CAP_ASYNC_DIO; }
static inline unsigned crmfs_cap_no_opendir_support(void) { return FUSE_CAP_NO_OPENDIR_SUPPORT; }
static inline unsigned crmfs_cap_splice_read(void) { return FUSE_CAP_SPLICE_READ; }
static inline unsigned crmfs_cap_splice_move(void) { return FUSE_CAP_SPLICE_MOVE; }
// Writes a write request's data (in memory, or in the pipe libfuse spliced it into) to an open file at
// `pos`: from a pipe the kernel moves it into the file without a copy through this process.
static inline ssize_t crmfs_write_buf_to_fd(struct fuse_bufvec *in, int fd, off_t pos) {
    struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
    out.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    out.buf[0].fd = fd;
    out.buf[0].pos = pos;
    return fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_MOVE);
}

// fuse_session_loop_mt is a macro choosing a versioned symbol; Swift cannot see macros.
static inline int crmfs_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *cfg) { return fuse_session_loop_mt(se, cfg); }
#endif
