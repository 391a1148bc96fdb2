/* addrsel-resolve-musl: getaddrinfo(NAME) as the C library it is linked with (musl,
 * statically) orders it, one address per line. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char *eai_name(int e)
{
	switch (e) {
	case EAI_NONAME: return "EAI_NONAME";
	case EAI_AGAIN: return "EAI_AGAIN";
	case EAI_FAIL: return "EAI_FAIL";
	case EAI_FAMILY: return "EAI_FAMILY";
	case EAI_MEMORY: return "EAI_MEMORY";
#ifdef EAI_NODATA
	case EAI_NODATA: return "EAI_NODATA";
#endif
	case EAI_SYSTEM: return "EAI_SYSTEM";
	default: return "EAI_OTHER";
	}
}

int main(int argc, char **argv)
{
	struct addrinfo hints, *res, *ai;
	char buf[INET6_ADDRSTRLEN];
	int e;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NAME\n", argv[0]);
		return 2;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	/* One entry per address (without a socket type musl lists each twice). */
	hints.ai_socktype = SOCK_STREAM;
	e = getaddrinfo(argv[1], NULL, &hints, &res);
	if (e != 0) {
		fprintf(stderr, "%s\n", eai_name(e));
		return 1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		const void *a = ai->ai_family == AF_INET
		    ? (const void *)&((const struct sockaddr_in *)ai->ai_addr)->sin_addr
		    : (const void *)&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		if (inet_ntop(ai->ai_family, a, buf, sizeof(buf)) != NULL)
			puts(buf);
	}
	freeaddrinfo(res);
	return 0;
}
