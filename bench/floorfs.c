// The floor of a tree walk through FUSE on this machine: a file system that serves a given tree from an
// in-memory table, answering each request as fast as libfuse allows (its multi-threaded loop, the same
// readdirplus-always, no-opendir and long-timeout choices crmfs makes, "." and ".." listed as crmfs lists
// them). bench/scale.sh walks it beside crmfs to show what part of a walk's time is the kernel's and
// libfuse's own. Usage: floorfs TREE MOUNTPOINT, where TREE holds `find -printf '%y %P\n'` lines.
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    int is_dir, parent, count, capacity;
    int *children;
} node_t;

static node_t *nodes;
static int node_count = 1;  // index = inode; 1 is the root, 0 unused

// Paths to node indexes: open addressing over a power-of-two table.
static char **keys;
static int *values;
static size_t slots;

static size_t hash(const char *text) {
    size_t h = 1469598103934665603ULL;
    for (; *text; text++) h = (h ^ (unsigned char)*text) * 1099511628211ULL;
    return h;
}

static int *slot(const char *path) {
    size_t i = hash(path) & (slots - 1);
    while (keys[i] && strcmp(keys[i], path)) i = (i + 1) & (slots - 1);
    if (!keys[i]) keys[i] = strdup(path);
    return &values[i];
}

static void add_child(int parent, int child) {
    node_t *p = &nodes[parent];
    if (p->count == p->capacity) {
        p->capacity = p->capacity ? p->capacity * 2 : 4;
        p->children = realloc(p->children, p->capacity * sizeof(int));
    }
    p->children[p->count++] = child;
}

static int load(const char *file) {
    FILE *in = fopen(file, "r");
    if (!in) return -1;
    size_t lines = 0;
    for (int c; (c = fgetc(in)) != EOF;) lines += c == '\n';
    rewind(in);
    nodes = calloc(lines + 2, sizeof(node_t));
    for (slots = 1; slots < 2 * (lines + 2); slots <<= 1) {}
    keys = calloc(slots, sizeof(char *));
    values = calloc(slots, sizeof(int));
    nodes[1] = (node_t){.name = "", .is_dir = 1, .parent = 1};
    *slot("") = 1;
    node_count = 2;
    char *line = NULL;
    size_t size = 0;
    ssize_t length;
    while ((length = getline(&line, &size, in)) > 2) {
        line[length - 1] = '\0';
        char *path = line + 2;
        char *slash = strrchr(path, '/');
        char *name = slash ? slash + 1 : path;
        if (slash) *slash = '\0';
        int parent = *slot(slash ? path : "");
        if (slash) *slash = '/';
        if (parent == 0) continue;  // a parent find did not list first
        int me = node_count++;
        nodes[me] = (node_t){.name = strdup(name), .is_dir = line[0] == 'd', .parent = parent};
        *slot(path) = me;
        add_child(parent, me);
    }
    free(line);
    fclose(in);
    return 0;
}

static void attributes(int ino, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = nodes[ino].is_dir ? S_IFDIR | 0755 : S_IFREG | 0644;
    st->st_nlink = nodes[ino].is_dir ? 2 : 1;
}

static void entry(int ino, struct fuse_entry_param *e) {
    memset(e, 0, sizeof *e);
    e->ino = ino;
    e->attr_timeout = e->entry_timeout = 600;
    attributes(ino, &e->attr);
}

static void on_init(void *data, struct fuse_conn_info *conn) {
    conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
}

static void on_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    node_t *p = &nodes[parent];
    for (int i = 0; i < p->count; i++) {
        if (!strcmp(nodes[p->children[i]].name, name)) {
            struct fuse_entry_param e;
            entry(p->children[i], &e);
            fuse_reply_entry(req, &e);
            return;
        }
    }
    fuse_reply_err(req, ENOENT);
}

static void on_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    struct stat st;
    attributes(ino, &st);
    fuse_reply_attr(req, &st, 600);
}

static void on_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, ENOSYS); }

static void on_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
    char *buffer = malloc(size);
    size_t used = 0;
    node_t *p = &nodes[ino];
    for (off_t index = offset; index < p->count + 2; index++) {
        int child = index == 0 ? (int)ino : index == 1 ? p->parent : p->children[index - 2];
        const char *name = index == 0 ? "." : index == 1 ? ".." : nodes[child].name;
        struct fuse_entry_param e;
        entry(child, &e);
        size_t needed = fuse_add_direntry_plus(req, buffer + used, size - used, name, &e, index + 1);
        if (needed > size - used) break;
        used += needed;
    }
    fuse_reply_buf(req, buffer, used);
    free(buffer);
}

static const struct fuse_lowlevel_ops operations = {
    .init = on_init, .lookup = on_lookup, .getattr = on_getattr, .opendir = on_opendir, .readdirplus = on_readdirplus,
};

int main(int argc, char **argv) {
    if (argc != 3 || load(argv[1])) {
        fprintf(stderr, "usage: floorfs TREE MOUNTPOINT (TREE: find -printf '%%y %%P\\n' lines)\n");
        return 2;
    }
    char *fuse_argv[] = {argv[0], NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, fuse_argv);
    struct fuse_session *session = fuse_session_new(&args, &operations, sizeof operations, NULL);
    if (!session || fuse_session_mount(session, argv[2])) return 1;
    fuse_daemonize(0);
    struct fuse_loop_config *config = fuse_loop_cfg_create();
    int status = fuse_session_loop_mt(session, config);
    fuse_session_unmount(session);
    return status;
}
