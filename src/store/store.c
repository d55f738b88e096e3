#include "store/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"
#include "base/util.h"

struct store {
    sqlite3 *db;
    sqlite3_stmt *insert, *set_state, *update, *delete_, *select_all, *used_slots;
    sqlite3_stmt *tomb_insert, *tomb_get, *tomb_all, *tomb_prune;
    sqlite3_stmt *key_insert, *key_delete, *key_all;
};

/* Each entry moves the schema from version i to i + 1; never edit a released entry, append. */
static const char *const migrations[] = {
    "CREATE TABLE sandboxes ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT UNIQUE,"
    "  snapshot TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  env TEXT NOT NULL DEFAULT '{}',"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  resources TEXT NOT NULL DEFAULT '{}',"
    "  uid_slot INTEGER NOT NULL UNIQUE,"
    "  shim_pid INTEGER NOT NULL DEFAULT 0,"
    "  init_pid INTEGER NOT NULL DEFAULT 0"
    ");",
    /* 2: lifecycle settings and timestamps; owners (tenants), with names unique per owner ('' = the
     * admin), which needs the table rebuilt; "error" became "failed"; tombstones; API keys. */
    "CREATE TABLE sandboxes2 ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  name TEXT,"
    "  snapshot TEXT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  env TEXT NOT NULL DEFAULT '{}',"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  resources TEXT NOT NULL DEFAULT '{}',"
    "  uid_slot INTEGER NOT NULL UNIQUE,"
    "  shim_pid INTEGER NOT NULL DEFAULT 0,"
    "  init_pid INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT,"
    "  idle_ttl_s INTEGER NOT NULL DEFAULT 0,"
    "  delete_after_stop_s INTEGER NOT NULL DEFAULT 0,"
    "  timeout_s INTEGER NOT NULL DEFAULT 0,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  stopped_ms INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (owner, name)"
    ");"
    "INSERT INTO sandboxes2 (id, name, snapshot, state, created_ms, env, metadata, resources, uid_slot,"
    "  shim_pid, init_pid)"
    "  SELECT id, name, snapshot, CASE state WHEN 'error' THEN 'failed' ELSE state END, created_ms, env,"
    "  metadata, resources, uid_slot, shim_pid, init_pid FROM sandboxes;"
    "DROP TABLE sandboxes;"
    "ALTER TABLE sandboxes2 RENAME TO sandboxes;"
    "CREATE TABLE tombstones ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT,"
    "  deleted_ms INTEGER NOT NULL,"
    "  sandbox TEXT NOT NULL"
    ");"
    "CREATE INDEX tombstones_by_time ON tombstones (deleted_ms);"
    "CREATE TABLE api_keys ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT,"
    "  hash TEXT NOT NULL UNIQUE,"
    "  created_ms INTEGER NOT NULL,"
    "  quotas TEXT NOT NULL DEFAULT '{}'"
    ");",
    /* 3: snapshots from images and the content-addressed layer store they share (docs/design/snapshots.md).
     * A layer's reference count is the number of snapshot_layers rows naming it. */
    "CREATE TABLE snapshots ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  status TEXT NOT NULL,"
    "  reason TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  size_bytes INTEGER NOT NULL DEFAULT 0,"
    "  config TEXT NOT NULL DEFAULT '{}'"
    ");"
    "CREATE TABLE layers ("
    "  digest TEXT PRIMARY KEY,"
    "  size_bytes INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE snapshot_layers ("
    "  snapshot_id TEXT NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  digest TEXT NOT NULL REFERENCES layers (digest),"
    "  PRIMARY KEY (snapshot_id, position)"
    ");"
    "CREATE INDEX snapshot_layers_by_digest ON snapshot_layers (digest);",
    /* 4: checkpoints of sandboxes: a copy of the sandbox's disk image in <data-dir>/checkpoints/<id>.img
     * (docs/design/snapshots.md, Checkpoints and fork). They go with their sandbox. */
    "CREATE TABLE checkpoints ("
    "  id TEXT PRIMARY KEY,"
    "  sandbox_id TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  owner TEXT,"
    "  snapshot TEXT NOT NULL,"
    "  disk_mb INTEGER NOT NULL,"
    "  uid_base INTEGER NOT NULL,"
    "  size_bytes INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  UNIQUE (sandbox_id, name)"
    ");",
    /* 5: named volumes (an ext4 image each, <data-dir>/volumes/<id>/), unique per owner ('' = the admin),
     * and the volumes each sandbox mounts (JSON: [{"volume": id, "path": "/data", "read_only": false}]). */
    "CREATE TABLE volumes ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  size_mb INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  UNIQUE (owner, name)"
    ");"
    "ALTER TABLE sandboxes ADD COLUMN volumes TEXT NOT NULL DEFAULT '[]';",
    /* 6 (issue 4, capture and pull): a snapshot's owner (the tenant key that captured it; NULL = the admin's,
     * visible to all), its base ('host' = its layers go over the host's system dirs, '' = an image) and its
     * source ('image' = an uploaded tarball, 'registry' = a pull, 'capture' = a sandbox's upper layer). */
    "ALTER TABLE snapshots ADD COLUMN owner TEXT;"
    "ALTER TABLE snapshots ADD COLUMN base TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE snapshots ADD COLUMN source TEXT NOT NULL DEFAULT 'image';",
    /* 7 (issue 5, egress): a sandbox's network (JSON: {"mode", "egress"?, "slot"?, "host_if"?}, see
     * daemon/egress.h; '' = mode none). */
    "ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '';",
    /* 8 (issue 8): registry credentials that snapshot pulls name by id (LangSmith's `registry_id`), unique
     * by name per owner ('' = the admin). The password must be readable again to be sent to the
     * registry: it is as safe as the data dir (0700, root), like docker's config.json. */
    "CREATE TABLE registries ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL DEFAULT '',"
    "  name TEXT NOT NULL,"
    "  url TEXT NOT NULL,"
    "  auth_type TEXT NOT NULL DEFAULT '',"
    "  username TEXT NOT NULL DEFAULT '',"
    "  password TEXT NOT NULL DEFAULT '',"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  UNIQUE (owner, name)"
    ");",
};

#define SANDBOX_COLUMNS                                                                                      \
    "id, name, snapshot, state, created_ms, env, metadata, resources, uid_slot, shim_pid, init_pid, owner,"  \
    " reason, idle_ttl_s, delete_after_stop_s, timeout_s, expires_ms, stopped_ms, volumes, network"

static int db_error(struct store *s, sbx_error *err, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db);
    if ((rc & 0xff) == SQLITE_CONSTRAINT)
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "%s: %s", what, sqlite3_errmsg(s->db));
    if ((rc & 0xff) == SQLITE_FULL)
        return sbx_error_set(err, -ENOSPC, "%s: %s", what, sqlite3_errmsg(s->db));
    return sbx_error_set(err, -EIO, "%s: %s", what, sqlite3_errmsg(s->db));
}

static int exec_sql(struct store *s, const char *sql, sbx_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = sbx_error_set(err, -EIO, "sqlite: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

static int migrate(struct store *s, sbx_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return db_error(s, err, "read schema version");
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_finalize(st);
    if (version > (int)ELEMENTSOF(migrations))
        return sbx_error_set(err, -EPROTO, "database schema %d is newer than this sbxd (%zu)", version,
                             ELEMENTSOF(migrations));
    for (int v = version; v < (int)ELEMENTSOF(migrations); v++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", v + 1);
        int r;
        if ((r = exec_sql(s, "BEGIN IMMEDIATE;", err)) < 0)
            return r;
        if ((r = exec_sql(s, migrations[v], err)) < 0 || (r = exec_sql(s, pragma, err)) < 0) {
            exec_sql(s, "ROLLBACK;", NULL);
            return r;
        }
        if ((r = exec_sql(s, "COMMIT;", err)) < 0)
            return r;
    }
    return 0;
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret, sbx_error *err)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL) != SQLITE_OK)
        return db_error(s, err, "prepare");
    return 0;
}

int store_open(const char *path, struct store **ret, sbx_error *err)
{
    struct store *s = calloc(1, sizeof(*s));
    if (!s)
        return sbx_error_set(err, -ENOMEM, "out of memory");
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        int r = sbx_error_set(err, -EIO, "open database `%s`: %s", path,
                              s->db ? sqlite3_errmsg(s->db) : "out of memory");
        store_close(s);
        return r;
    }
    sqlite3_busy_timeout(s->db, 5000);
    int r;
    if ((r = exec_sql(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
                      err)) < 0 ||
        (r = migrate(s, err)) < 0 ||
        (r = prepare(s,
                     "INSERT INTO sandboxes (" SANDBOX_COLUMNS
                     ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     &s->insert, err)) < 0 ||
        (r = prepare(s,
                     "UPDATE sandboxes SET name = ?2, snapshot = ?3, state = ?4, created_ms = ?5, env = ?6,"
                     " metadata = ?7, resources = ?8, shim_pid = ?10, init_pid = ?11, owner = ?12,"
                     " reason = ?13, idle_ttl_s = ?14, delete_after_stop_s = ?15, timeout_s = ?16,"
                     " expires_ms = ?17, stopped_ms = ?18, volumes = ?19,"
                     " network = ?20 WHERE id = ?1 AND uid_slot = ?9",
                     &s->update, err)) < 0 ||
        (r = prepare(s, "UPDATE sandboxes SET state = ?, shim_pid = ?, init_pid = ? WHERE id = ?",
                     &s->set_state, err)) < 0 ||
        (r = prepare(s, "DELETE FROM sandboxes WHERE id = ?", &s->delete_, err)) < 0 ||
        (r = prepare(s, "SELECT " SANDBOX_COLUMNS " FROM sandboxes ORDER BY created_ms, id", &s->select_all,
                     err)) < 0 ||
        (r = prepare(s, "INSERT OR REPLACE INTO tombstones (id, owner, deleted_ms, sandbox) VALUES (?,?,?,?)",
                     &s->tomb_insert, err)) < 0 ||
        (r = prepare(s, "SELECT sandbox, owner FROM tombstones WHERE id = ?", &s->tomb_get, err)) < 0 ||
        (r = prepare(s, "SELECT id, owner, deleted_ms, sandbox FROM tombstones ORDER BY deleted_ms, id",
                     &s->tomb_all, err)) < 0 ||
        (r = prepare(s, "DELETE FROM tombstones WHERE deleted_ms < ?", &s->tomb_prune, err)) < 0 ||
        (r = prepare(s, "INSERT INTO api_keys (id, name, hash, created_ms, quotas) VALUES (?,?,?,?,?)",
                     &s->key_insert, err)) < 0 ||
        (r = prepare(s, "DELETE FROM api_keys WHERE id = ?", &s->key_delete, err)) < 0 ||
        (r = prepare(s, "SELECT id, name, hash, created_ms, quotas FROM api_keys ORDER BY created_ms, id",
                     &s->key_all, err)) < 0 ||
        (r = prepare(s, "SELECT uid_slot FROM sandboxes ORDER BY uid_slot", &s->used_slots, err)) < 0) {
        sbx_error_wrap(err, "database `%s`", path);
        store_close(s);
        return r;
    }
    *ret = s;
    return 0;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    sqlite3_finalize(s->insert);
    sqlite3_finalize(s->set_state);
    sqlite3_finalize(s->update);
    sqlite3_finalize(s->delete_);
    sqlite3_finalize(s->select_all);
    sqlite3_finalize(s->used_slots);
    sqlite3_finalize(s->tomb_insert);
    sqlite3_finalize(s->tomb_get);
    sqlite3_finalize(s->tomb_all);
    sqlite3_finalize(s->tomb_prune);
    sqlite3_finalize(s->key_insert);
    sqlite3_finalize(s->key_delete);
    sqlite3_finalize(s->key_all);
    sqlite3_close(s->db);
    free(s);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Steps a write statement to completion and resets it. */
static int step_done(struct store *s, sqlite3_stmt *st, const char *what, sbx_error *err)
{
    int rc = sqlite3_step(st);
    int r = rc == SQLITE_DONE ? 0 : db_error(s, err, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

/* Binds every column of the row in SANDBOX_COLUMNS order (insert and update share the numbering). */
static void bind_sandbox(sqlite3_stmt *st, const struct store_sandbox *sb)
{
    bind_text(st, 1, sb->id);
    bind_text(st, 2, sb->name);
    bind_text(st, 3, sb->snapshot);
    bind_text(st, 4, sb->state);
    sqlite3_bind_int64(st, 5, sb->created_ms);
    bind_text(st, 6, sb->env_json ? sb->env_json : "{}");
    bind_text(st, 7, sb->metadata_json ? sb->metadata_json : "{}");
    bind_text(st, 8, sb->resources_json ? sb->resources_json : "{}");
    sqlite3_bind_int(st, 9, sb->uid_slot);
    sqlite3_bind_int(st, 10, sb->shim_pid);
    sqlite3_bind_int(st, 11, sb->init_pid);
    bind_text(st, 12, sb->owner ? sb->owner : ""); /* '' = the admin: part of UNIQUE (owner, name) */
    bind_text(st, 13, sb->reason);
    sqlite3_bind_int64(st, 14, sb->idle_ttl_s);
    sqlite3_bind_int64(st, 15, sb->delete_after_stop_s);
    sqlite3_bind_int64(st, 16, sb->timeout_s);
    sqlite3_bind_int64(st, 17, sb->expires_ms);
    sqlite3_bind_int64(st, 18, sb->stopped_ms);
    bind_text(st, 19, sb->volumes_json ? sb->volumes_json : "[]");
    bind_text(st, 20, sb->network_json ? sb->network_json : "");
}

int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, sbx_error *err)
{
    bind_sandbox(s->insert, sb);
    return step_done(s, s->insert, "insert sandbox", err);
}

int store_sandbox_set_state(struct store *s, const char *id, const char *state, int shim_pid, int init_pid,
                            sbx_error *err)
{
    sqlite3_stmt *st = s->set_state;
    bind_text(st, 1, state);
    sqlite3_bind_int(st, 2, shim_pid);
    sqlite3_bind_int(st, 3, init_pid);
    bind_text(st, 4, id);
    return step_done(s, st, "update sandbox", err);
}

int store_sandbox_update(struct store *s, const struct store_sandbox *sb, sbx_error *err)
{
    bind_sandbox(s->update, sb);
    return step_done(s, s->update, "update sandbox", err);
}

int store_sandbox_delete(struct store *s, const char *id, sbx_error *err)
{
    bind_text(s->delete_, 1, id);
    return step_done(s, s->delete_, "delete sandbox", err);
}

static char *col_text(sqlite3_stmt *st, int i)
{
    return (char *)sqlite3_column_text(st, i);
}

/* Steps a SELECT to its end, handing each row to row() (which stops the walk by returning < 0), and
 * resets it. */
static int each_row(struct store *s, sqlite3_stmt *st, const char *what,
                    int (*row)(sqlite3_stmt *st, void *ctx), void *ctx, sbx_error *err)
{
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((r = row(st, ctx)) < 0)
            break;
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(s, err, what);
    sqlite3_reset(st);
    return r;
}

struct sandbox_walk {
    int (*cb)(const struct store_sandbox *sb, void *userdata);
    void *userdata;
};

static int sandbox_row(sqlite3_stmt *st, void *ctx)
{
    struct sandbox_walk *w = ctx;
    struct store_sandbox sb = {
        .id = col_text(st, 0),
        .name = col_text(st, 1),
        .snapshot = col_text(st, 2),
        .state = col_text(st, 3),
        .created_ms = sqlite3_column_int64(st, 4),
        .env_json = col_text(st, 5),
        .metadata_json = col_text(st, 6),
        .resources_json = col_text(st, 7),
        .uid_slot = sqlite3_column_int(st, 8),
        .shim_pid = sqlite3_column_int(st, 9),
        .init_pid = sqlite3_column_int(st, 10),
        .owner = *col_text(st, 11) ? col_text(st, 11) : NULL,
        .reason = col_text(st, 12),
        .idle_ttl_s = sqlite3_column_int64(st, 13),
        .delete_after_stop_s = sqlite3_column_int64(st, 14),
        .timeout_s = sqlite3_column_int64(st, 15),
        .expires_ms = sqlite3_column_int64(st, 16),
        .stopped_ms = sqlite3_column_int64(st, 17),
        .volumes_json = col_text(st, 18),
        .network_json = col_text(st, 19),
    };
    return w->cb(&sb, w->userdata);
}

int store_sandbox_foreach(struct store *s, int (*cb)(const struct store_sandbox *sb, void *userdata),
                          void *userdata, sbx_error *err)
{
    struct sandbox_walk w = {cb, userdata};
    return each_row(s, s->select_all, "list sandboxes", sandbox_row, &w, err);
}

int store_sandbox_free_uid_slot(struct store *s, int *ret_slot, sbx_error *err)
{
    sqlite3_stmt *st = s->used_slots;
    int want = 1, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int used = sqlite3_column_int(st, 0);
        if (used == want)
            want++;
        else if (used > want)
            break;
    }
    int r = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(s, err, "allocate uid range");
    sqlite3_reset(st);
    if (r == 0)
        *ret_slot = want;
    return r;
}

int store_tombstone_insert(struct store *s, const struct store_tombstone *t, sbx_error *err)
{
    sqlite3_stmt *st = s->tomb_insert;
    bind_text(st, 1, t->id);
    bind_text(st, 2, t->owner);
    sqlite3_bind_int64(st, 3, t->deleted_ms);
    bind_text(st, 4, t->sandbox_json);
    return step_done(s, st, "insert tombstone", err);
}

int store_tombstone_get(struct store *s, const char *id, char **ret_json, char **ret_owner, sbx_error *err)
{
    sqlite3_stmt *st = s->tomb_get;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st), r;
    if (rc == SQLITE_ROW) {
        const char *owner = col_text(st, 1);
        *ret_json = xstrdup(col_text(st, 0));
        *ret_owner = owner ? xstrdup(owner) : NULL;
        r = 0;
    } else if (rc == SQLITE_DONE) {
        r = -ENOENT;
    } else {
        r = db_error(s, err, "read tombstone");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return r;
}

struct tombstone_walk {
    int (*cb)(const struct store_tombstone *t, void *userdata);
    void *userdata;
};

static int tombstone_row(sqlite3_stmt *st, void *ctx)
{
    struct tombstone_walk *w = ctx;
    struct store_tombstone t = {
        .id = col_text(st, 0),
        .owner = col_text(st, 1),
        .deleted_ms = sqlite3_column_int64(st, 2),
        .sandbox_json = col_text(st, 3),
    };
    return w->cb(&t, w->userdata);
}

int store_tombstone_foreach(struct store *s, int (*cb)(const struct store_tombstone *t, void *userdata),
                            void *userdata, sbx_error *err)
{
    struct tombstone_walk w = {cb, userdata};
    return each_row(s, s->tomb_all, "list tombstones", tombstone_row, &w, err);
}

int store_tombstone_prune(struct store *s, int64_t before_ms, sbx_error *err)
{
    sqlite3_bind_int64(s->tomb_prune, 1, before_ms);
    return step_done(s, s->tomb_prune, "prune tombstones", err);
}

int store_key_insert(struct store *s, const struct store_key *k, sbx_error *err)
{
    sqlite3_stmt *st = s->key_insert;
    bind_text(st, 1, k->id);
    bind_text(st, 2, k->name);
    bind_text(st, 3, k->hash);
    sqlite3_bind_int64(st, 4, k->created_ms);
    bind_text(st, 5, k->quotas_json ? k->quotas_json : "{}");
    return step_done(s, st, "insert API key", err);
}

int store_key_delete(struct store *s, const char *id, sbx_error *err)
{
    bind_text(s->key_delete, 1, id);
    int r = step_done(s, s->key_delete, "delete API key", err);
    if (r == 0 && sqlite3_changes(s->db) == 0)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "API key `%s` not found", id);
    return r;
}

struct key_walk {
    int (*cb)(const struct store_key *k, void *userdata);
    void *userdata;
};

static int key_row(sqlite3_stmt *st, void *ctx)
{
    struct key_walk *w = ctx;
    struct store_key k = {
        .id = col_text(st, 0),
        .name = col_text(st, 1),
        .hash = col_text(st, 2),
        .created_ms = sqlite3_column_int64(st, 3),
        .quotas_json = col_text(st, 4),
    };
    return w->cb(&k, w->userdata);
}

int store_key_foreach(struct store *s, int (*cb)(const struct store_key *k, void *userdata), void *userdata,
                      sbx_error *err)
{
    struct key_walk w = {cb, userdata};
    return each_row(s, s->key_all, "list API keys", key_row, &w, err);
}

/* --- snapshots and layers ------------------------------------------------------------------------- */

/* Rare operations: their statements are prepared per call rather than kept. */
static int prepare_once(struct store *s, const char *sql, sqlite3_stmt **ret, sbx_error *err)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, ret, NULL) != SQLITE_OK)
        return db_error(s, err, "prepare");
    return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(sqlite3_stmt *, sqlite3_finalize);

int store_snapshot_insert(struct store *s, const struct store_snapshot *sn, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "INSERT INTO snapshots (id, name, status, reason, created_ms, size_bytes, config,"
                         " owner, base, source) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, sn->id);
    bind_text(st, 2, sn->name);
    bind_text(st, 3, sn->status);
    bind_text(st, 4, sn->reason);
    sqlite3_bind_int64(st, 5, sn->created_ms);
    sqlite3_bind_int64(st, 6, sn->size_bytes);
    bind_text(st, 7, sn->config_json ? sn->config_json : "{}");
    bind_text(st, 8, sn->owner);
    bind_text(st, 9, sn->base ? sn->base : "");
    bind_text(st, 10, sn->source ? sn->source : "image");
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "insert snapshot");
}

int store_snapshot_finish(struct store *s, const char *id, const struct store_layer *layers, size_t n,
                          int64_t size_bytes, const char *config_json, int64_t now_ms, sbx_error *err)
{
    int r = exec_sql(s, "BEGIN IMMEDIATE;", err);
    if (r < 0)
        return r;
    sqlite3_stmt *ins_layer = NULL, *ins_ref = NULL, *upd = NULL;
    if ((r = prepare_once(s, "INSERT OR IGNORE INTO layers (digest, size_bytes, created_ms) VALUES (?,?,?)",
                          &ins_layer, err)) < 0 ||
        (r = prepare_once(s, "INSERT INTO snapshot_layers (snapshot_id, position, digest) VALUES (?,?,?)",
                          &ins_ref, err)) < 0 ||
        (r = prepare_once(s,
                          "UPDATE snapshots SET status = 'ready', reason = NULL, size_bytes = ?, config = ?"
                          " WHERE id = ?",
                          &upd, err)) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        bind_text(ins_layer, 1, layers[i].digest);
        sqlite3_bind_int64(ins_layer, 2, layers[i].size_bytes);
        sqlite3_bind_int64(ins_layer, 3, now_ms);
        if ((r = step_done(s, ins_layer, "insert layer", err)) < 0)
            goto out;
        bind_text(ins_ref, 1, id);
        sqlite3_bind_int64(ins_ref, 2, (int64_t)i);
        bind_text(ins_ref, 3, layers[i].digest);
        if ((r = step_done(s, ins_ref, "reference layer", err)) < 0)
            goto out;
    }
    sqlite3_bind_int64(upd, 1, size_bytes);
    bind_text(upd, 2, config_json ? config_json : "{}");
    bind_text(upd, 3, id);
    r = step_done(s, upd, "mark snapshot ready", err);
out:
    sqlite3_finalize(ins_layer);
    sqlite3_finalize(ins_ref);
    sqlite3_finalize(upd);
    if (r < 0) {
        exec_sql(s, "ROLLBACK;", NULL);
        return r;
    }
    return exec_sql(s, "COMMIT;", err);
}

int store_snapshot_fail(struct store *s, const char *id, const char *reason, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "UPDATE snapshots SET status = 'failed', reason = ? WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, reason);
    bind_text(st, 2, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "mark snapshot failed");
}

int store_snapshot_delete(struct store *s, const char *id, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "DELETE FROM snapshots WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "delete snapshot");
}

struct snapshot_walk {
    int (*cb)(const struct store_snapshot *sn, void *userdata);
    void *userdata;
};

static int snapshot_row(sqlite3_stmt *st, void *ctx)
{
    struct snapshot_walk *w = ctx;
    struct store_snapshot sn = {
        .id = col_text(st, 0),
        .name = col_text(st, 1),
        .status = col_text(st, 2),
        .reason = col_text(st, 3),
        .created_ms = sqlite3_column_int64(st, 4),
        .size_bytes = sqlite3_column_int64(st, 5),
        .config_json = col_text(st, 6),
        .layers = col_text(st, 7),
        .owner = col_text(st, 8),
        .base = col_text(st, 9),
        .source = col_text(st, 10),
    };
    return w->cb(&sn, w->userdata);
}

int store_snapshot_foreach(struct store *s, int (*cb)(const struct store_snapshot *sn, void *userdata),
                           void *userdata, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "SELECT id, name, status, reason, created_ms, size_bytes, config,"
                         " (SELECT group_concat(digest, ',') FROM (SELECT digest FROM snapshot_layers"
                         "   WHERE snapshot_id = snapshots.id ORDER BY position)), owner, base, source"
                         " FROM snapshots ORDER BY created_ms, id",
                         &st, err);
    if (r < 0)
        return r;
    struct snapshot_walk w = {cb, userdata};
    return each_row(s, st, "list snapshots", snapshot_row, &w, err);
}

struct layer_walk {
    int (*cb)(const struct store_layer *l, void *userdata);
    void *userdata;
};

static int layer_row(sqlite3_stmt *st, void *ctx)
{
    struct layer_walk *w = ctx;
    struct store_layer l = {
        .digest = col_text(st, 0),
        .size_bytes = sqlite3_column_int64(st, 1),
        .created_ms = sqlite3_column_int64(st, 2),
        .refs = sqlite3_column_int64(st, 3),
    };
    return w->cb(&l, w->userdata);
}

int store_layer_foreach(struct store *s, int (*cb)(const struct store_layer *l, void *userdata),
                        void *userdata, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r =
        prepare_once(s,
                     "SELECT digest, size_bytes, created_ms,"
                     " (SELECT count(*) FROM snapshot_layers WHERE snapshot_layers.digest = layers.digest)"
                     " FROM layers ORDER BY created_ms, digest",
                     &st, err);
    if (r < 0)
        return r;
    struct layer_walk w = {cb, userdata};
    return each_row(s, st, "list layers", layer_row, &w, err);
}

int store_layer_delete_unreferenced(struct store *s, const char *digest, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "DELETE FROM layers WHERE digest = ?1 AND NOT EXISTS"
                         " (SELECT 1 FROM snapshot_layers WHERE snapshot_layers.digest = ?1)",
                         &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, digest);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_error(s, err, "delete layer");
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

int store_checkpoint_insert(struct store *s, const struct store_checkpoint *ck, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "INSERT INTO checkpoints (id, sandbox_id, name, owner, snapshot, disk_mb, uid_base,"
                         " size_bytes, created_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                         &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, ck->id);
    bind_text(st, 2, ck->sandbox_id);
    bind_text(st, 3, ck->name);
    bind_text(st, 4, ck->owner);
    bind_text(st, 5, ck->snapshot);
    sqlite3_bind_int64(st, 6, ck->disk_mb);
    sqlite3_bind_int64(st, 7, ck->uid_base);
    sqlite3_bind_int64(st, 8, ck->size_bytes);
    sqlite3_bind_int64(st, 9, ck->created_ms);
    if (sqlite3_step(st) == SQLITE_DONE)
        return 0;
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE)
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "sandbox `%s` has a checkpoint named `%s`",
                              ck->sandbox_id, ck->name);
    return db_error(s, err, "insert checkpoint");
}

int store_checkpoint_delete(struct store *s, const char *id, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "DELETE FROM checkpoints WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "delete checkpoint");
}

struct checkpoint_walk {
    int (*cb)(const struct store_checkpoint *ck, void *userdata);
    void *userdata;
};

static int checkpoint_row(sqlite3_stmt *st, void *ctx)
{
    struct checkpoint_walk *w = ctx;
    struct store_checkpoint ck = {
        .id = col_text(st, 0),
        .sandbox_id = col_text(st, 1),
        .name = col_text(st, 2),
        .owner = col_text(st, 3),
        .snapshot = col_text(st, 4),
        .disk_mb = sqlite3_column_int64(st, 5),
        .uid_base = sqlite3_column_int64(st, 6),
        .size_bytes = sqlite3_column_int64(st, 7),
        .created_ms = sqlite3_column_int64(st, 8),
    };
    return w->cb(&ck, w->userdata);
}

int store_checkpoint_foreach(struct store *s, int (*cb)(const struct store_checkpoint *ck, void *userdata),
                             void *userdata, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r =
        prepare_once(s,
                     "SELECT id, sandbox_id, name, owner, snapshot, disk_mb, uid_base, size_bytes, created_ms"
                     " FROM checkpoints ORDER BY created_ms, id",
                     &st, err);
    if (r < 0)
        return r;
    struct checkpoint_walk w = {cb, userdata};
    return each_row(s, st, "list checkpoints", checkpoint_row, &w, err);
}

int store_volume_insert(struct store *s, const struct store_volume *v, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "INSERT INTO volumes (id, name, owner, size_mb, created_ms) VALUES (?,?,?,?,?)",
                         &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, v->id);
    bind_text(st, 2, v->name);
    bind_text(st, 3, v->owner ? v->owner : "");
    sqlite3_bind_int64(st, 4, v->size_mb);
    sqlite3_bind_int64(st, 5, v->created_ms);
    if (sqlite3_step(st) == SQLITE_DONE)
        return 0;
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE)
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "a volume named `%s` exists", v->name);
    return db_error(s, err, "insert volume");
}

int store_volume_delete(struct store *s, const char *id, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "DELETE FROM volumes WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "delete volume");
}

struct volume_walk {
    int (*cb)(const struct store_volume *v, void *userdata);
    void *userdata;
};

static int volume_row(sqlite3_stmt *st, void *ctx)
{
    struct volume_walk *w = ctx;
    struct store_volume v = {
        .id = col_text(st, 0),
        .name = col_text(st, 1),
        .owner = *col_text(st, 2) ? col_text(st, 2) : NULL,
        .size_mb = sqlite3_column_int64(st, 3),
        .created_ms = sqlite3_column_int64(st, 4),
    };
    return w->cb(&v, w->userdata);
}

int store_volume_foreach(struct store *s, int (*cb)(const struct store_volume *v, void *userdata),
                         void *userdata, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(
        s, "SELECT id, name, owner, size_mb, created_ms FROM volumes ORDER BY created_ms, id", &st, err);
    if (r < 0)
        return r;
    struct volume_walk w = {cb, userdata};
    return each_row(s, st, "list volumes", volume_row, &w, err);
}

/* --- registries -------------------------------------------------------------------------------------- */

int store_registry_insert(struct store *s, const struct store_registry *g, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(
        s,
        "INSERT INTO registries (id, owner, name, url, auth_type, username, password, created_ms,"
        " updated_ms) VALUES (?,?,?,?,?,?,?,?,?)",
        &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, g->id);
    bind_text(st, 2, g->owner ? g->owner : "");
    bind_text(st, 3, g->name);
    bind_text(st, 4, g->url);
    bind_text(st, 5, g->auth_type ? g->auth_type : "");
    bind_text(st, 6, g->username ? g->username : "");
    bind_text(st, 7, g->password ? g->password : "");
    sqlite3_bind_int64(st, 8, g->created_ms);
    sqlite3_bind_int64(st, 9, g->updated_ms);
    if (sqlite3_step(st) == SQLITE_DONE)
        return 0;
    if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE)
        return sbx_error_setk(err, -EEXIST, "conflict", 409, "a registry named `%s` exists", g->name);
    return db_error(s, err, "insert registry");
}

int store_registry_update(struct store *s, const struct store_registry *g, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "UPDATE registries SET url = ?2, auth_type = ?3, username = ?4, password = ?5,"
                         " updated_ms = ?6 WHERE id = ?1",
                         &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, g->id);
    bind_text(st, 2, g->url);
    bind_text(st, 3, g->auth_type ? g->auth_type : "");
    bind_text(st, 4, g->username ? g->username : "");
    bind_text(st, 5, g->password ? g->password : "");
    sqlite3_bind_int64(st, 6, g->updated_ms);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "update registry");
}

int store_registry_delete(struct store *s, const char *id, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s, "DELETE FROM registries WHERE id = ?", &st, err);
    if (r < 0)
        return r;
    bind_text(st, 1, id);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : db_error(s, err, "delete registry");
}

struct registry_walk {
    int (*cb)(const struct store_registry *g, void *userdata);
    void *userdata;
};

static int registry_row(sqlite3_stmt *st, void *ctx)
{
    struct registry_walk *w = ctx;
    struct store_registry g = {
        .id = col_text(st, 0),
        .owner = *col_text(st, 1) ? col_text(st, 1) : NULL,
        .name = col_text(st, 2),
        .url = col_text(st, 3),
        .auth_type = col_text(st, 4),
        .username = col_text(st, 5),
        .password = col_text(st, 6),
        .created_ms = sqlite3_column_int64(st, 7),
        .updated_ms = sqlite3_column_int64(st, 8),
    };
    return w->cb(&g, w->userdata);
}

int store_registry_foreach(struct store *s, int (*cb)(const struct store_registry *g, void *userdata),
                           void *userdata, sbx_error *err)
{
    _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
    int r = prepare_once(s,
                         "SELECT id, owner, name, url, auth_type, username, password, created_ms, updated_ms"
                         " FROM registries ORDER BY created_ms, id",
                         &st, err);
    if (r < 0)
        return r;
    struct registry_walk w = {cb, userdata};
    return each_row(s, st, "list registries", registry_row, &w, err);
}
