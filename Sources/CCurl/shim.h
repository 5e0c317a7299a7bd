#ifndef CRMFS_CCURL_SHIM_H
#define CRMFS_CCURL_SHIM_H
// curl_easy_setopt / curl_easy_getinfo / curl_multi_setopt are variadic, which Swift
// cannot call. These typed wrappers are the only way the HTTP module touches them.
#include <curl/curl.h>

static inline CURLcode crmfs_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode crmfs_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode crmfs_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode crmfs_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode crmfs_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }

typedef size_t (*crmfs_data_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode crmfs_easy_setopt_write_function(CURL *h, crmfs_data_callback f) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode crmfs_easy_setopt_header_function(CURL *h, crmfs_data_callback f) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }
static inline CURLcode crmfs_easy_setopt_read_function(CURL *h, crmfs_data_callback f) { return curl_easy_setopt(h, CURLOPT_READFUNCTION, f); }

static inline CURLcode crmfs_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode crmfs_easy_getinfo_pointer(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode crmfs_easy_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

static inline CURLMcode crmfs_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

// CURLMsg holds a union; Swift reads the result through this accessor.
static inline CURLcode crmfs_msg_result(CURLMsg *m) { return m->data.result; }

static inline size_t crmfs_readfunc_abort(void) { return CURL_READFUNC_ABORT; }
static inline size_t crmfs_writefunc_pause(void) { return CURL_WRITEFUNC_PAUSE; }
#endif
