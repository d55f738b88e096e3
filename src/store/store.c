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
};

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
                     "INSERT INTO sandboxes (id, name, snapshot, state, created_ms, env, metadata, resources,"
                     " uid_slot, shim_pid, init_pid) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                     &s->insert, err)) < 0 ||
        (r = prepare(
             s,
             "UPDATE sandboxes SET name = ?, snapshot = ?, state = ?, created_ms = ?, env = ?, metadata = ?, "
             "resources = ?, shim_pid = ?, init_pid = ? WHERE id = ?",
             &s->update, err)) < 0 ||
        (r = prepare(s, "UPDATE sandboxes SET state = ?, shim_pid = ?, init_pid = ? WHERE id = ?",
                     &s->set_state, err)) < 0 ||
        (r = prepare(s, "DELETE FROM sandboxes WHERE id = ?", &s->delete_, err)) < 0 ||
        (r = prepare(s,
                     "SELECT id, name, snapshot, state, created_ms, env, metadata, resources, uid_slot,"
                     " shim_pid, init_pid FROM sandboxes ORDER BY created_ms, id",
                     &s->select_all, err)) < 0 ||
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

int store_sandbox_insert(struct store *s, const struct store_sandbox *sb, sbx_error *err)
{
    sqlite3_stmt *st = s->insert;
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
    return step_done(s, st, "insert sandbox", err);
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
    sqlite3_stmt *st = s->update;
    bind_text(st, 1, sb->name);
    bind_text(st, 2, sb->snapshot);
    bind_text(st, 3, sb->state);
    sqlite3_bind_int64(st, 4, sb->created_ms);
    bind_text(st, 5, sb->env_json ? sb->env_json : "{}");
    bind_text(st, 6, sb->metadata_json ? sb->metadata_json : "{}");
    bind_text(st, 7, sb->resources_json ? sb->resources_json : "{}");
    sqlite3_bind_int(st, 8, sb->shim_pid);
    sqlite3_bind_int(st, 9, sb->init_pid);
    bind_text(st, 10, sb->id);
    return step_done(s, st, "update sandbox", err);
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

int store_sandbox_foreach(struct store *s, int (*cb)(const struct store_sandbox *sb, void *userdata),
                          void *userdata, sbx_error *err)
{
    sqlite3_stmt *st = s->select_all;
    int rc, r = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
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
        };
        if ((r = cb(&sb, userdata)) < 0)
            break;
    }
    if (r == 0 && rc != SQLITE_DONE)
        r = db_error(s, err, "list sandboxes");
    sqlite3_reset(st);
    return r;
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
