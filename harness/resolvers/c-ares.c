/* addrsel-resolve-c-ares: ares_getaddrinfo(NAME) as c-ares sorts it, one address per line.
 * The channel reads the hosts file only (ARES_OPT_LOOKUPS "f"): no DNS query is sent. */
#include <arpa/inet.h>
#include <ares.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>

struct state {
	int done;
	int status;
};

static void answered(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct state *st = arg;
	struct ares_addrinfo_node *n;
	char buf[INET6_ADDRSTRLEN];

	(void)timeouts;
	st->done = 1;
	st->status = status;
	if (status != ARES_SUCCESS || res == NULL)
		return;
	for (n = res->nodes; n != NULL; n = n->ai_next) {
		const void *a = n->ai_family == AF_INET
		    ? (const void *)&((const struct sockaddr_in *)n->ai_addr)->sin_addr
		    : (const void *)&((const struct sockaddr_in6 *)n->ai_addr)->sin6_addr;
		if (inet_ntop(n->ai_family, a, buf, sizeof(buf)) != NULL)
			puts(buf);
	}
	ares_freeaddrinfo(res);
}

int main(int argc, char **argv)
{
	struct ares_options opts;
	struct ares_addrinfo_hints hints;
	struct state st = { 0, 0 };
	ares_channel ch;
	int rounds;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME\n", argv[0]);
		return 2;
	}
	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		fprintf(stderr, "ares_library_init failed\n");
		return 1;
	}
	memset(&opts, 0, sizeof(opts));
	opts.lookups = (char *)"f";
	if (ares_init_options(&ch, &opts, ARES_OPT_LOOKUPS) != ARES_SUCCESS) {
		fprintf(stderr, "ares_init_options failed\n");
		return 1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC; /* flags 0: sorted (not ARES_AI_NOSORT) */
	ares_getaddrinfo(ch, argv[1], NULL, &hints, answered, &st);
	/* With lookups "f" the answer comes at once; the loop only guards against a version
	 * that defers it. */
	for (rounds = 0; !st.done && rounds < 50; rounds++) {
		fd_set r, w;
		struct timeval tv = { 0, 100000 };
		int nfds;
		FD_ZERO(&r);
		FD_ZERO(&w);
		nfds = ares_fds(ch, &r, &w);
		select(nfds, &r, &w, NULL, &tv);
		ares_process(ch, &r, &w);
	}
	ares_destroy(ch);
	ares_library_cleanup();
	if (!st.done) {
		fprintf(stderr, "no answer\n");
		return 1;
	}
	if (st.status != ARES_SUCCESS) {
		fprintf(stderr, "%s\n", ares_strerror(st.status));
		return 1;
	}
	return 0;
}
