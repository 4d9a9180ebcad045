/*
 * A TLS 1.2 client that changes its certificate in the middle of a connection, as an attacker
 * would: it sends one HTTP request presenting the first certificate, renegotiates presenting the
 * second, and sends another request on the same connection. No Node.js client can do this (a Node
 * client's certificate is fixed when its socket is made), so the hardening suite builds this with
 * the system's C compiler and OpenSSL (renegotiation.ts).
 *
 * usage: renegotiating-client <port> <server-ca.pem> <cert1.pem> <key1.pem> <cert2.pem> <key2.pem> <request1> <request2>
 *
 * Prints one line per step, each a word and then base64 or a message:
 *   HANDSHAKE ok | HANDSHAKE failed <why>
 *   ANSWER1 <base64 of the whole HTTP response> | ANSWER1-FAILED <why>
 *   RENEGOTIATION ok | RENEGOTIATION failed <why>
 *   ANSWER2 <base64> | ANSWER2-FAILED <why>
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_ANSWER (1 << 20)

static void openssl_error(char *out, size_t size) {
  unsigned long code = ERR_get_error();
  if (code == 0) {
    snprintf(out, size, "no OpenSSL error (the connection was closed)");
    return;
  }
  ERR_error_string_n(code, out, size);
  ERR_clear_error();
}

static void print_base64(const char *word, const unsigned char *data, size_t length) {
  unsigned char *encoded = malloc(4 * ((length + 2) / 3) + 1);
  EVP_EncodeBlock(encoded, data, (int)length);
  printf("%s %s\n", word, encoded);
  fflush(stdout);
  free(encoded);
}

/* Where the body of a complete response ends, or 0 while more is needed. Content-Length or chunked. */
static size_t response_end(const char *buffer, size_t length) {
  const char *head_end = NULL;
  for (size_t i = 0; i + 3 < length; i++) {
    if (memcmp(buffer + i, "\r\n\r\n", 4) == 0) {
      head_end = buffer + i + 4;
      break;
    }
  }
  if (head_end == NULL) return 0;
  size_t head_length = (size_t)(head_end - buffer);
  const char *line = buffer;
  while (line < head_end) {
    const char *next = strstr(line, "\r\n");
    if (next == NULL || next >= head_end) break;
    if (strncasecmp(line, "content-length:", 15) == 0) {
      size_t body = strtoul(line + 15, NULL, 10);
      return length >= head_length + body ? head_length + body : 0;
    }
    if (strncasecmp(line, "transfer-encoding:", 18) == 0) {
      for (size_t i = head_length; i + 4 < length; i++) {
        if (memcmp(buffer + i, "\r\n0\r\n\r\n", 7) == 0) return i + 7;
      }
      if (length >= head_length + 5 && memcmp(buffer + head_length, "0\r\n\r\n", 5) == 0) return head_length + 5;
      return 0;
    }
    line = next + 2;
  }
  return head_length; /* no body */
}

/* Writes the request and reads one response; 0 on success. */
static int exchange(SSL *ssl, const char *request, char *answer, size_t *answer_length, char *why, size_t why_size) {
  if (SSL_write(ssl, request, (int)strlen(request)) <= 0) {
    openssl_error(why, why_size);
    return -1;
  }
  size_t length = 0;
  for (;;) {
    int n = SSL_read(ssl, answer + length, (int)(MAX_ANSWER - length));
    if (n <= 0) {
      if (length > 0) break; /* closed after a response without framing */
      openssl_error(why, why_size);
      return -1;
    }
    length += (size_t)n;
    size_t end = response_end(answer, length);
    if (end > 0) {
      length = end;
      break;
    }
    if (length == MAX_ANSWER) break;
  }
  *answer_length = length;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s <port> <server-ca.pem> <cert1.pem> <key1.pem> <cert2.pem> <key2.pem> <request1> <request2>\n", argv[0]);
    return 2;
  }
  char why[512];
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION); /* TLS 1.3 has no renegotiation */
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, argv[2], NULL) != 1 || SSL_CTX_use_certificate_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
    openssl_error(why, sizeof why);
    fprintf(stderr, "cannot load the files: %s\n", why);
    return 2;
  }

  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  struct timeval timeout = {.tv_sec = 20, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
    perror("connect");
    return 2;
  }
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (SSL_connect(ssl) != 1) {
    openssl_error(why, sizeof why);
    printf("HANDSHAKE failed %s\n", why);
    return 0;
  }
  printf("HANDSHAKE ok\n");
  fflush(stdout);

  char *answer = malloc(MAX_ANSWER);
  size_t answer_length = 0;
  if (exchange(ssl, argv[7], answer, &answer_length, why, sizeof why) != 0) {
    printf("ANSWER1-FAILED %s\n", why);
    return 0;
  }
  print_base64("ANSWER1", (unsigned char *)answer, answer_length);

  /* The second certificate, on this same connection. */
  if (SSL_use_certificate_file(ssl, argv[5], SSL_FILETYPE_PEM) != 1 || SSL_use_PrivateKey_file(ssl, argv[6], SSL_FILETYPE_PEM) != 1) {
    openssl_error(why, sizeof why);
    fprintf(stderr, "cannot load the second certificate: %s\n", why);
    return 2;
  }
  if (SSL_renegotiate(ssl) != 1 || SSL_do_handshake(ssl) != 1) {
    openssl_error(why, sizeof why);
    printf("RENEGOTIATION failed %s\n", why);
  } else {
    printf("RENEGOTIATION ok\n");
  }
  fflush(stdout);

  if (exchange(ssl, argv[8], answer, &answer_length, why, sizeof why) != 0) {
    printf("ANSWER2-FAILED %s\n", why);
    return 0;
  }
  print_base64("ANSWER2", (unsigned char *)answer, answer_length);
  SSL_shutdown(ssl);
  close(fd);
  return 0;
}
