/*
 * ioc_acl: the broker access rules of ioc as a Mosquitto 2.0 plugin (deny by default).
 *
 * Why a plugin: Mosquitto 2.0's acl_file checks PUBLISH only, never SUBSCRIBE, so a device could join the
 * center's `$share/ioc-ingest/...` group and have its share of every device's telemetry dropped (measured in
 * issue 14); the dynamic-security plugin checks subscriptions but has no %u patterns in 2.0, i.e. a role per
 * device, which does not hold up at 100,000 devices. Passwords stay in Mosquitto's password file (rendered
 * from the registry by devices/access.py, reloaded on SIGHUP); this plugin decides topics, from the username.
 *
 * Options (mosquitto.conf, written by devices/access.py for the embedded broker and the compose stack):
 *   plugin_opt_admin USER      everything below ioc/ (incl. shared subscriptions) and $SYS: operator tools
 *   plugin_opt_ingest USER     subscribe telemetry (directly or in a $share group), nothing else
 *   plugin_opt_commands USER   publish devices' cmd; subscribe their status and cmd/ack
 *   plugin_opt_alerts USER     publish ioc/v1/{province}/alerts
 * Every other authenticated user is a device whose username is its id: it publishes only
 * ioc/v1/{p}/{s}/{id}/telemetry[/senml], .../status, .../cmd/ack and subscribes only to ioc/v1/{p}/{s}/{id}/cmd,
 * without wildcards, $share or $SYS.
 *
 * Build: gcc -shared -fPIC -O2 -o ioc_acl.so ioc_acl.c  (headers: Debian's mosquitto-dev, libmosquitto-dev)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_USERS 8
#define MAX_LEVELS 9

enum role { ROLE_DEVICE, ROLE_ADMIN, ROLE_INGEST, ROLE_COMMANDS, ROLE_ALERTS, ROLE_COUNT };

static mosquitto_plugin_id_t *plugin_id;
static char *role_users[ROLE_COUNT][MAX_USERS];

static enum role role_of(const char *username)
{
	for (int role = ROLE_ADMIN; role < ROLE_COUNT; role++) {
		for (int i = 0; i < MAX_USERS && role_users[role][i]; i++) {
			if (!strcmp(role_users[role][i], username)) {
				return (enum role)role;
			}
		}
	}
	return ROLE_DEVICE;
}

/* Split `topic` at '/' into at most MAX_LEVELS levels (pointers into `buf`); -1 when it has more. */
static int split_levels(const char *topic, char *buf, size_t bufsize, char **levels)
{
	size_t len = strlen(topic);
	if (len + 1 > bufsize) {
		return -1;
	}
	memcpy(buf, topic, len + 1);
	int count = 0;
	char *start = buf;
	for (char *p = buf;; p++) {
		if (*p == '/' || *p == '\0') {
			bool end = (*p == '\0');
			if (count == MAX_LEVELS) {
				return -1;
			}
			*p = '\0';
			levels[count++] = start;
			start = p + 1;
			if (end) {
				break;
			}
		}
	}
	return count;
}

static bool is_plain_level(const char *level)
{
	return level[0] != '\0' && strpbrk(level, "+#$") == NULL;
}

static bool matches_level(const char *level, const char *pattern)
{
	return pattern == NULL || !strcmp(level, pattern);
}

/* True when `topic` is ioc/v1/{p}/{s}/{device}/{channel} with plain levels; NULL matches any device. */
static bool is_device_topic(const char *topic, const char *device, const char *channel)
{
	char buf[1024];
	char *levels[MAX_LEVELS];
	int n = split_levels(topic, buf, sizeof(buf), levels);
	if (n < 6 || strcmp(levels[0], "ioc") || strcmp(levels[1], "v1")) {
		return false;
	}
	for (int i = 2; i < n; i++) {
		if (!is_plain_level(levels[i])) {
			return false;
		}
	}
	if (!matches_level(levels[4], device)) {
		return false;
	}
	/* The channel may span two levels (telemetry/senml, cmd/ack). */
	char joined[64];
	if (n == 6) {
		return !strcmp(levels[5], channel);
	}
	if (n == 7 && strlen(levels[5]) + strlen(levels[6]) + 2 <= sizeof(joined)) {
		strcpy(joined, levels[5]);
		strcat(joined, "/");
		strcat(joined, levels[6]);
		return !strcmp(joined, channel);
	}
	return false;
}

static bool is_alerts_topic(const char *topic)
{
	char buf[1024];
	char *levels[MAX_LEVELS];
	int n = split_levels(topic, buf, sizeof(buf), levels);
	return n == 4 && !strcmp(levels[0], "ioc") && !strcmp(levels[1], "v1") && is_plain_level(levels[2])
		&& !strcmp(levels[3], "alerts");
}

/* A subscription filter equal to `filter`, directly or as $share/{group}/filter. */
static bool is_filter(const char *sub, const char *filter)
{
	if (!strncmp(sub, "$share/", 7)) {
		const char *rest = strchr(sub + 7, '/');
		if (rest == NULL || rest == sub + 7) {
			return false;
		}
		sub = rest + 1;
	}
	return !strcmp(sub, filter);
}

static bool device_may(const char *username, const char *topic, int access)
{
	switch (access) {
	case MOSQ_ACL_WRITE:
		return is_device_topic(topic, username, "telemetry") || is_device_topic(topic, username, "telemetry/senml")
			|| is_device_topic(topic, username, "status") || is_device_topic(topic, username, "cmd/ack");
	case MOSQ_ACL_SUBSCRIBE:
	case MOSQ_ACL_READ:
		return is_device_topic(topic, username, "cmd");
	case MOSQ_ACL_UNSUBSCRIBE:
		return true;
	default:
		return false;
	}
}

static bool center_may(enum role role, const char *topic, int access)
{
	if (access == MOSQ_ACL_UNSUBSCRIBE) {
		return true;
	}
	switch (role) {
	case ROLE_ADMIN:
		return !strncmp(topic, "ioc/", 4) || !strncmp(topic, "$share/", 7) || !strncmp(topic, "$SYS/", 5)
			|| !strcmp(topic, "$SYS/#");
	case ROLE_INGEST:
		if (access == MOSQ_ACL_SUBSCRIBE) {
			return is_filter(topic, "ioc/v1/+/+/+/telemetry") || is_filter(topic, "ioc/v1/+/+/+/telemetry/senml");
		}
		return access == MOSQ_ACL_READ
			&& (is_device_topic(topic, NULL, "telemetry") || is_device_topic(topic, NULL, "telemetry/senml"));
	case ROLE_COMMANDS:
		if (access == MOSQ_ACL_WRITE) {
			return is_device_topic(topic, NULL, "cmd");
		}
		if (access == MOSQ_ACL_SUBSCRIBE) {
			return !strcmp(topic, "ioc/v1/+/+/+/status") || !strcmp(topic, "ioc/v1/+/+/+/cmd/ack");
		}
		return access == MOSQ_ACL_READ
			&& (is_device_topic(topic, NULL, "status") || is_device_topic(topic, NULL, "cmd/ack"));
	case ROLE_ALERTS:
		return access == MOSQ_ACL_WRITE && is_alerts_topic(topic);
	default:
		return false;
	}
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	if (username == NULL || ed->topic == NULL) {
		return MOSQ_ERR_ACL_DENIED;
	}
	enum role role = role_of(username);
	bool allowed = role == ROLE_DEVICE ? device_may(username, ed->topic, ed->access)
	                                   : center_may(role, ed->topic, ed->access);
	return allowed ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) {
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count)
{
	static const char *const names[ROLE_COUNT] = {NULL, "admin", "ingest", "commands", "alerts"};
	(void)userdata;
	plugin_id = identifier;
	for (int i = 0; i < option_count; i++) {
		for (int role = ROLE_ADMIN; role < ROLE_COUNT; role++) {
			if (strcmp(options[i].key, names[role])) {
				continue;
			}
			int slot = 0;
			while (slot < MAX_USERS && role_users[role][slot]) {
				slot++;
			}
			if (slot == MAX_USERS) {
				mosquitto_log_printf(MOSQ_LOG_ERR, "ioc_acl: too many %s users", names[role]);
				return MOSQ_ERR_INVAL;
			}
			role_users[role][slot] = strdup(options[i].value);
		}
	}
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	for (int role = 0; role < ROLE_COUNT; role++) {
		for (int i = 0; i < MAX_USERS; i++) {
			free(role_users[role][i]);
			role_users[role][i] = NULL;
		}
	}
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
}
