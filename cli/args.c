/* sbx CLI argument parsing: a tiny option scanner shared by every subcommand and the create/exec/run
 * option set. */
#include "args.h"

#include <errno.h>
#include <math.h> /* isfinite() only: a macro, no libm */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(char *errbuf, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *errbuf, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

int cli_next_arg(const struct cli_option *opts, int argc, char **argv, int *i, int *ret_id,
                 const char **ret_value, char *errbuf, size_t errlen)
{
    if (*i >= argc)
        return CLI_ARG_END;
    const char *a = argv[*i];
    if (a[0] != '-' || a[1] == 0)
        return CLI_ARG_POSITIONAL;
    if (strcmp(a, "--") == 0) {
        (*i)++;
        return CLI_ARG_DASHDASH;
    }
    const struct cli_option *o = NULL;
    const char *inline_value = NULL;
    if (a[1] == '-') {
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        for (const struct cli_option *p = opts; p->long_name; p++)
            if (strlen(p->long_name) == n && strncmp(p->long_name, name, n) == 0)
                o = p;
        if (!o)
            return fail(errbuf, errlen, "unknown option `%s`", a);
        if (eq && !o->has_arg)
            return fail(errbuf, errlen, "option `--%s` takes no value", o->long_name);
        inline_value = eq ? eq + 1 : NULL;
    } else {
        for (const struct cli_option *p = opts; p->long_name; p++)
            if (p->short_name && p->short_name == a[1])
                o = p;
        if (!o || a[2] != 0)
            return fail(errbuf, errlen, "unknown option `%s`", a);
    }
    (*i)++;
    *ret_id = o->id;
    *ret_value = NULL;
    if (o->has_arg) {
        if (inline_value)
            *ret_value = inline_value;
        else if (*i < argc)
            *ret_value = argv[(*i)++];
        else
            return fail(errbuf, errlen, "option `%s` needs a value", a);
    }
    return CLI_ARG_OPTION;
}

int cli_parse_memory_mb(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v <= 0)
        return -EINVAL;
    double mult;
    if (*end == 0 || strcasecmp(end, "M") == 0 || strcasecmp(end, "MB") == 0 || strcasecmp(end, "MiB") == 0)
        mult = 1;
    else if (strcasecmp(end, "K") == 0 || strcasecmp(end, "KB") == 0 || strcasecmp(end, "KiB") == 0)
        mult = 1.0 / 1024;
    else if (strcasecmp(end, "G") == 0 || strcasecmp(end, "GB") == 0 || strcasecmp(end, "GiB") == 0)
        mult = 1024;
    else if (strcasecmp(end, "T") == 0 || strcasecmp(end, "TB") == 0 || strcasecmp(end, "TiB") == 0)
        mult = 1024.0 * 1024;
    else if (strcasecmp(end, "B") == 0)
        mult = 1.0 / (1024 * 1024);
    else
        return -EINVAL;
    double mb = v * mult;
    if (mb > (double)INT32_MAX)
        return -EINVAL;
    int64_t whole = (int64_t)mb; /* round up without libm: 1K is 1 MiB, not 0 */
    if ((double)whole < mb - 1e-9)
        whole++;
    if (whole < 1)
        return -EINVAL;
    *ret = whole;
    return 0;
}

int cli_parse_duration(const char *s, double *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v <= 0)
        return -EINVAL;
    if (*end == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "m") == 0)
        v *= 60;
    else if (strcmp(end, "h") == 0)
        v *= 3600;
    else
        return -EINVAL;
    *ret = v;
    return 0;
}

int cli_parse_positive_double(const char *s, double *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v <= 0)
        return -EINVAL;
    *ret = v;
    return 0;
}

int cli_parse_positive_int(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -EINVAL;
    *ret = v;
    return 0;
}

int cli_parse_lifetime(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return -EINVAL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -EINVAL;
    if (*end == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "m") == 0)
        v *= 60;
    else if (strcmp(end, "h") == 0)
        v *= 3600;
    else
        return -EINVAL;
    /* Whole seconds only (the API's unit): "0.5" is refused rather than rounded to 0, which means never.
     * "0.7m" may come out of the multiplication a hair off 42: allow for that. */
    if (v > (double)INT32_MAX)
        return -EINVAL;
    int64_t whole = (int64_t)(v + 0.5);
    double diff = v - (double)whole;
    if (diff > 1e-6 || diff < -1e-6)
        return -EINVAL;
    *ret = whole;
    return 0;
}

static const struct cli_option all_options[] = {
    {"help", 'h', false, OPT_HELP},
    {"env", 'e', true, OPT_ENV},
    {"snapshot", 0, true, OPT_SNAPSHOT},
    {"memory", 'm', true, OPT_MEMORY},
    {"cpus", 0, true, OPT_CPUS},
    {"pids", 0, true, OPT_PIDS},
    {"name", 0, true, OPT_NAME},
    {"metadata", 0, true, OPT_METADATA},
    {"cwd", 'w', true, OPT_CWD},
    {"timeout", 't', true, OPT_TIMEOUT},
    {"stdin", 'i', false, OPT_STDIN},
    {"interactive", 0, false, OPT_STDIN},
    {"tty", 0, false, OPT_TTY},
    {"idle-ttl", 0, true, OPT_IDLE_TTL},
    {"lifetime", 0, true, OPT_LIFETIME},
    {"delete-after-stop", 0, true, OPT_DELETE_AFTER_STOP},
    {"json", 0, false, OPT_JSON},
    {"checkpoint", 0, true, OPT_CHECKPOINT},
    {"volume", 'v', true, OPT_VOLUME},
    {"user", 'u', true, OPT_USER},
    {"network", 0, true, OPT_NETWORK},
    {"allow", 0, true, OPT_ALLOW},
    {"deny", 0, true, OPT_DENY},
    {"egress-default", 0, true, OPT_EGRESS_DEFAULT},
    {NULL, 0, false, 0},
};

static bool option_allowed(int id, unsigned flags)
{
    switch (id) {
    case OPT_HELP:
        return true;
    case OPT_ENV:
        return flags & (ARGS_CREATE | ARGS_EXEC);
    case OPT_SNAPSHOT:
    case OPT_CHECKPOINT:
    case OPT_VOLUME:
    case OPT_NETWORK:
    case OPT_ALLOW:
    case OPT_DENY:
    case OPT_EGRESS_DEFAULT:
    case OPT_MEMORY:
    case OPT_CPUS:
    case OPT_PIDS:
    case OPT_NAME:
        return flags & ARGS_CREATE;
    case OPT_METADATA:
    case OPT_IDLE_TTL:
    case OPT_DELETE_AFTER_STOP:
        return flags & (ARGS_CREATE | ARGS_UPDATE);
    case OPT_LIFETIME:
        return flags & (ARGS_CREATE | ARGS_UPDATE | ARGS_RENEW);
    case OPT_JSON:
        return flags & (ARGS_UPDATE | ARGS_RENEW);
    case OPT_CWD:
    case OPT_USER:
    case OPT_TIMEOUT:
    case OPT_STDIN:
        return flags & ARGS_EXEC;
    case OPT_TTY:
        return (flags & ARGS_EXEC) && (flags & ARGS_SANDBOX);
    default:
        return false;
    }
}

void cli_args_done(struct cli_args *a)
{
    free(a->env);
    free(a->metadata);
    free(a->volumes);
    free(a->allow);
    free(a->deny);
    *a = (struct cli_args){0};
}

int cli_parse_args(int argc, char **argv, unsigned flags, struct cli_args *ret, char *errbuf, size_t errlen)
{
    struct cli_args a = {.idle_ttl_s = -1, .lifetime_s = -1, .delete_after_stop_s = -1};
    size_t n_env = 0, n_meta = 0, n_vol = 0, n_allow = 0, n_deny = 0;
    /* At most argc entries each: allocate once. */
    a.env = calloc((size_t)argc + 1, sizeof(char *));
    a.metadata = calloc((size_t)argc + 1, sizeof(char *));
    a.volumes = calloc((size_t)argc + 1, sizeof(char *));
    a.allow = calloc((size_t)argc + 1, sizeof(char *));
    a.deny = calloc((size_t)argc + 1, sizeof(char *));
    if (!a.env || !a.metadata || !a.volumes || !a.allow || !a.deny) {
        cli_args_done(&a);
        return -ENOMEM;
    }
    int i = 1, r = 0;
    while (r >= 0) {
        int id, start = i;
        const char *v;
        r = cli_next_arg(all_options, argc, argv, &i, &id, &v, errbuf, errlen);
        if (r < 0 || r == CLI_ARG_END)
            break;
        if (r == CLI_ARG_DASHDASH || r == CLI_ARG_POSITIONAL) {
            if ((flags & ARGS_SANDBOX) && !a.sandbox && i < argc && r == CLI_ARG_POSITIONAL) {
                a.sandbox = argv[i++];
                r = 0;
                continue;
            }
            if ((flags & ARGS_SANDBOX) && !a.sandbox && i < argc) {
                /* "exec -- ID CMD" is unusual but unambiguous. */
                a.sandbox = argv[i++];
            }
            if (!(flags & ARGS_EXEC) && i < argc) {
                r = fail(errbuf, errlen, "unexpected argument `%s`", argv[i]);
                break;
            }
            if (i < argc)
                a.cmd = &argv[i];
            r = 0;
            break;
        }
        if (!option_allowed(id, flags)) {
            r = fail(errbuf, errlen, "option `%s` is not valid here", argv[start]);
            break;
        }
        switch (id) {
        case OPT_HELP:
            a.help = true;
            break;
        case OPT_ENV:
            if (!strchr(v, '=') || v[0] == '=')
                r = fail(errbuf, errlen, "--env wants K=V, got `%s`", v);
            else
                a.env[n_env++] = v;
            break;
        case OPT_METADATA:
            if (!strchr(v, '=') || v[0] == '=')
                r = fail(errbuf, errlen, "--metadata wants K=V, got `%s`", v);
            else
                a.metadata[n_meta++] = v;
            break;
        case OPT_SNAPSHOT:
            a.snapshot = v;
            break;
        case OPT_CHECKPOINT:
            a.checkpoint = v;
            break;
        case OPT_VOLUME:
            a.volumes[n_vol++] = v;
            break;
        case OPT_NETWORK:
            if (strcmp(v, "none") != 0 && strcmp(v, "egress") != 0)
                r = fail(errbuf, errlen, "--network wants none or egress, got `%s`", v);
            else
                a.network = v;
            break;
        case OPT_ALLOW:
            a.allow[n_allow++] = v;
            break;
        case OPT_DENY:
            a.deny[n_deny++] = v;
            break;
        case OPT_EGRESS_DEFAULT:
            if (strcmp(v, "allow") != 0 && strcmp(v, "deny") != 0)
                r = fail(errbuf, errlen, "--egress-default wants allow or deny, got `%s`", v);
            else
                a.egress_default = v;
            break;
        case OPT_NAME:
            a.name = v;
            break;
        case OPT_MEMORY:
            if (cli_parse_memory_mb(v, &a.memory_mb) < 0)
                r = fail(errbuf, errlen, "bad --memory `%s` (examples: 512M, 1G, 1024)", v);
            break;
        case OPT_CPUS:
            if (cli_parse_positive_double(v, &a.cpus) < 0)
                r = fail(errbuf, errlen, "bad --cpus `%s`", v);
            break;
        case OPT_PIDS:
            if (cli_parse_positive_int(v, &a.pids) < 0)
                r = fail(errbuf, errlen, "bad --pids `%s`", v);
            break;
        case OPT_CWD:
            a.cwd = v;
            break;
        case OPT_USER:
            a.user = v;
            break;
        case OPT_TIMEOUT:
            if (cli_parse_duration(v, &a.timeout) < 0)
                r = fail(errbuf, errlen, "bad --timeout `%s` (seconds, or with s/m/h)", v);
            break;
        case OPT_STDIN:
            a.interactive = true;
            break;
        case OPT_TTY:
            a.tty = true;
            break;
        case OPT_IDLE_TTL:
            if (cli_parse_lifetime(v, &a.idle_ttl_s) < 0)
                r = fail(errbuf, errlen, "bad --idle-ttl `%s` (whole seconds, or with s/m/h; 0: never)", v);
            break;
        case OPT_LIFETIME:
            if (cli_parse_lifetime(v, &a.lifetime_s) < 0)
                r = fail(errbuf, errlen, "bad --lifetime `%s` (whole seconds, or with s/m/h; 0: none)", v);
            else if ((flags & ARGS_RENEW) && a.lifetime_s == 0)
                r = fail(errbuf, errlen, "--lifetime of renew must be > 0");
            break;
        case OPT_DELETE_AFTER_STOP:
            if (cli_parse_lifetime(v, &a.delete_after_stop_s) < 0)
                r = fail(errbuf, errlen,
                         "bad --delete-after-stop `%s` (whole seconds, or with s/m/h; 0: never)", v);
            break;
        case OPT_JSON:
            a.json = true;
            break;
        default:
            r = fail(errbuf, errlen, "unhandled option");
            break;
        }
    }
    if (r >= 0 && !a.help) {
        if ((flags & ARGS_SANDBOX) && !a.sandbox)
            r = fail(errbuf, errlen, "missing sandbox id");
        else if ((flags & ARGS_EXEC) && !a.cmd)
            r = fail(errbuf, errlen, "missing command (put it after `--`)");
        else if ((flags & ARGS_UPDATE) && a.idle_ttl_s < 0 && a.lifetime_s < 0 && a.delete_after_stop_s < 0 &&
                 n_meta == 0)
            r = fail(errbuf, errlen,
                     "nothing to update (give --idle-ttl, --lifetime, --delete-after-stop or "
                     "--metadata)");
    }
    if (r < 0) {
        cli_args_done(&a);
        return r;
    }
    *ret = a;
    return 0;
}

bool cli_split_remote(const char *spec, char **ret_id, const char **ret_path)
{
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || memchr(spec, '/', (size_t)(colon - spec)))
        return false;
    *ret_id = strndup(spec, (size_t)(colon - spec));
    *ret_path = colon + 1;
    return true;
}
