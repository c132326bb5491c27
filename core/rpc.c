#include "rpc.h"

#include <grpc/grpc.h>

static const char *const code_names[] = {
    "OK",          "CANCELLED",           "UNKNOWN",           "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED", "NOT_FOUND",     "ALREADY_EXISTS",    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",    "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL",          "UNAVAILABLE",       "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *rpc_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof(code_names) / sizeof(code_names[0])))
        return "UNKNOWN";
    return code_names[code];
}

const char *rpc_grpc_version(void)
{
    return grpc_version_string();
}
