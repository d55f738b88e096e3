/* LangSmith's registries (`client.registries` of the generated client): named credentials for private
 * container registries, which a snapshot create names by id (`registry_id`) for sbx's registry pull
 * (daemon/pull.h). Kept in sbx's store (migration 8), per tenant; the password is never answered back.
 * Registries are few, so lookups walk the table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "api/jsonreq.h"
#include "base/cleanup.h"
#include "base/util.h"
#include "compat/langsmith_internal.h"
#include "daemon/daemon.h"
#include "daemon/pull.h"
#include "store/store.h"

#define REG_NAME_MAX 64
#define REG_URL_MAX 512
#define REG_SECRET_MAX 4096
#define REG_PER_OWNER_MAX 256

static void registry_free(struct store_registry *g)
{
    free(g->id);
    free(g->owner);
    free(g->name);
    free(g->url);
    free(g->auth_type);
    free(g->username);
    free(g->password);
    *g = (struct store_registry){0};
}

static struct store_registry registry_copy(const struct store_registry *g)
{
    return (struct store_registry){
        .id = xstrdup(g->id),
        .owner = g->owner ? xstrdup(g->owner) : NULL,
        .name = xstrdup(g->name),
        .url = xstrdup(g->url),
        .auth_type = xstrdup(g->auth_type),
        .username = xstrdup(g->username),
        .password = xstrdup(g->password),
        .created_ms = g->created_ms,
        .updated_ms = g->updated_ms,
    };
}

struct reg_find {
    const char *owner; /* NULL = the admin's */
    const char *ref;   /* an id or a name; NULL = every registry of the owner */
    struct store_registry found;
    size_t count;
    json_t *list;
};

static bool same_owner(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static json_t *registry_json(const struct store_registry *g);

static int find_row(const struct store_registry *g, void *userdata)
{
    struct reg_find *f = userdata;
    if (!same_owner(f->owner, g->owner))
        return 0;
    f->count++;
    if (f->list)
        json_array_append_new(f->list, registry_json(g));
    if (f->ref && !f->found.id && (strcmp(g->id, f->ref) == 0 || strcmp(g->name, f->ref) == 0))
        f->found = registry_copy(g);
    return 0;
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    format_time_ms(buf, sizeof(buf), ms);
    return json_string(buf);
}

static json_t *registry_json(const struct store_registry *g)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o*, s:b, s:o, s:o}", "id", g->id, "name", g->name, "url",
                     g->url, "auth_type", *g->auth_type ? g->auth_type : "basic", "provider", "generic",
                     "username", *g->username ? json_string(g->username) : NULL, "has_password",
                     *g->password != 0, "created_at", time_json(g->created_ms), "updated_at",
                     time_json(g->updated_ms));
}

/* The caller's registry {ref} (an id or a name), or a 404 answered. */
static int lookup(struct api_ctx *c, const char *ref, struct store_registry *ret)
{
    struct reg_find f = {.owner = c->owner, .ref = ref};
    sbx_error err = {0};
    if (store_registry_foreach(c->d->store, find_row, &f, &err) < 0) {
        ls_reply_sbx_error(c->req, &err, LS_CONTROL);
        return -1;
    }
    if (!f.found.id) {
        ls_reply_error(c->req, 404, "NotFound", "Registry '%s' not found", ref);
        return -1;
    }
    *ret = f.found;
    return 0;
}

/* "http(s)://host[:port][/]": what a pull's image reference must start with (its host part). */
static bool url_valid(const char *url)
{
    const char *host = strncmp(url, "https://", 8) == 0  ? url + 8
                       : strncmp(url, "http://", 7) == 0 ? url + 7
                                                         : NULL;
    if (!host || !*host)
        return false;
    for (const char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-' || *p == ':' || *p == '[' || *p == ']' || (*p == '/' && p[1] == 0)))
            return false;
    return true;
}

/* The fields a create or a patch may set; each present one replaces g's. */
static int read_fields(json_t *body, struct store_registry *g, bool create, sbx_error *err)
{
    const char *name = NULL, *url = NULL, *user = NULL, *pass = NULL, *auth = NULL, *arn = NULL;
    if (jsonreq_string(body, "name", REG_NAME_MAX, &name, err) < 0 ||
        jsonreq_string(body, "url", REG_URL_MAX, &url, err) < 0 ||
        jsonreq_string(body, "username", REG_SECRET_MAX, &user, err) < 0 ||
        jsonreq_string(body, "password", REG_SECRET_MAX, &pass, err) < 0 ||
        jsonreq_string(body, "auth_type", 32, &auth, err) < 0 ||
        jsonreq_string(body, "aws_role_arn", REG_SECRET_MAX, &arn, err) < 0)
        return err->code;
    if (arn || (auth && strcmp(auth, "basic") != 0))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "only `auth_type` basic (username and password) is supported by sbx");
    if (!create && name && strcmp(name, g->name) != 0)
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "a registry cannot be renamed");
    if (url && !url_valid(url))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`url` must be http(s)://host[:port] (no path, no credentials)");
    if (create && (!name || !*name || !url))
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400, "`name` and `url` are required");
    if (create)
        g->name = xstrdup(name);
    if (url) {
        free(g->url);
        g->url = xstrdup(url);
        size_t n = strlen(g->url);
        if (g->url[n - 1] == '/')
            g->url[n - 1] = 0;
    }
    if (auth) {
        free(g->auth_type);
        g->auth_type = xstrdup(auth);
    }
    if (user) {
        free(g->username);
        g->username = xstrdup(user);
    }
    if (pass) {
        free(g->password);
        g->password = xstrdup(pass);
    }
    return 0;
}

static void create_with_body(struct api_ctx *c, json_t *body)
{
    sbx_error err = {0};
    struct reg_find f = {.owner = c->owner};
    if (store_registry_foreach(c->d->store, find_row, &f, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    if (f.count >= REG_PER_OWNER_MAX)
        return ls_reply_error(c->req, 429, "QuotaExceeded", "at most %d registries per API key",
                              REG_PER_OWNER_MAX);
    _cleanup_(registry_free) struct store_registry g = {
        .auth_type = xstrdup("basic"), .username = xstrdup(""), .password = xstrdup("")};
    if (read_fields(body, &g, true, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    char id[SBX_ID_MAX + 1];
    id_generate(id, sizeof(id), "reg_");
    g.id = xstrdup(id);
    g.owner = c->owner ? xstrdup(c->owner) : NULL;
    g.created_ms = g.updated_ms = now_ms();
    if (store_registry_insert(c->d->store, &g, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond_json(c->req, 201, registry_json(&g));
}

void ls_registry_create(struct api_ctx *c)
{
    ls_read_json(c, create_with_body);
}

void ls_registry_list(struct api_ctx *c)
{
    sbx_error err = {0};
    struct reg_find f = {.owner = c->owner, .list = json_array()};
    if (store_registry_foreach(c->d->store, find_row, &f, &err) < 0) {
        json_decref(f.list);
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    }
    /* Both names the generated client reads; one page. */
    http_respond_json(
        c->req, 200,
        json_pack("{s:O, s:o, s:n, s:i}", "items", f.list, "registries", f.list, "next_cursor", "offset", 0));
}

void ls_registry_get(struct api_ctx *c)
{
    _cleanup_(registry_free) struct store_registry g = {0};
    if (lookup(c, c->sandbox_id, &g) == 0)
        http_respond_json(c->req, 200, registry_json(&g));
}

static void update_with_body(struct api_ctx *c, json_t *body)
{
    _cleanup_(registry_free) struct store_registry g = {0};
    if (lookup(c, c->sandbox_id, &g) < 0)
        return;
    sbx_error err = {0};
    if (read_fields(body, &g, false, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    g.updated_ms = now_ms();
    if (store_registry_update(c->d->store, &g, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond_json(c->req, 200, registry_json(&g));
}

void ls_registry_update(struct api_ctx *c)
{
    ls_read_json(c, update_with_body);
}

void ls_registry_delete(struct api_ctx *c)
{
    _cleanup_(registry_free) struct store_registry g = {0};
    if (lookup(c, c->sandbox_id, &g) < 0)
        return;
    sbx_error err = {0};
    if (store_registry_delete(c->d->store, g.id, &err) < 0)
        return ls_reply_sbx_error(c->req, &err, LS_CONTROL);
    http_respond(c->req, 204, NULL, NULL, 0);
}

int ls_registry_credentials(struct api_ctx *c, const char *registry_id, const char *image,
                            struct pull_request *pr, char **ret_user, char **ret_pass, sbx_error *err)
{
    struct reg_find f = {.owner = c->owner, .ref = registry_id};
    if (store_registry_foreach(c->d->store, find_row, &f, err) < 0)
        return err->code;
    _cleanup_(registry_free) struct store_registry g = f.found;
    if (!g.id)
        return sbx_error_setk(err, -ENOENT, "not_found", 404, "Registry '%s' not found", registry_id);
    bool https = strncmp(g.url, "https://", 8) == 0;
    const char *host = g.url + (https ? 8 : 7);
    size_t hl = strlen(host);
    /* The credentials go only to the registry they are for. */
    if (strncmp(image, host, hl) != 0 || image[hl] != '/')
        return sbx_error_setk(err, -EINVAL, "invalid_argument", 400,
                              "`docker_image` `%s` is not on registry `%s` (%s)", image, g.name, g.url);
    pr->insecure = !https;
    *ret_user = *g.username ? xstrdup(g.username) : NULL;
    *ret_pass = *g.password ? xstrdup(g.password) : NULL;
    pr->username = *ret_user;
    pr->password = *ret_pass;
    return 0;
}
