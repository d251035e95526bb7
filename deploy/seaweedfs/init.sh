#!/bin/sh
# The one shot `s3-init` of docker-compose.yml (image chrislusf/seaweedfs, once `s3` is
# healthy); tests/test_compose_stack.py runs this same file against a real `weed mini`.
#
#  1. The bucket $BUCKET, made when missing.
#  2. The S3 identity of the facefleet services ($S3_APP_IDENTITY): Read, Write, List and
#     Tagging on $BUCKET only, no Admin, so it can neither make or delete buckets nor touch
#     another one. Its keys are exactly the ones given: an existing identity is dropped and
#     made again in the same shell session, so a rotated secret leaves no old key behind.
#
# `weed shell` administers the cluster over the master's and filer's gRPC ports and needs no
# S3 key: the S3 root keys stay with the s3 service. Commands go in on stdin (never argv,
# where `ps` would show the secret), and the output of s3.configure, which echoes the secret,
# is discarded. Reruns are harmless.
set -eu

: "${WEED_MASTER:?set WEED_MASTER (host:port of the weed master)}"
: "${WEED_FILER:?set WEED_FILER (host:port of the weed filer)}"
: "${BUCKET:?set BUCKET}"
: "${S3_APP_IDENTITY:=facefleet-app}"
: "${S3_APP_ACCESS_KEY:?set S3_APP_ACCESS_KEY}"
: "${S3_APP_SECRET_KEY:?set S3_APP_SECRET_KEY}"
WEED="${WEED:-weed}"
# weed shell waits for the master without a time limit: every call gets one.
STEP_S="${STEP_S:-30}"
WAIT_S="${WAIT_S:-120}"

# weed shell splits its input on blanks and ';': values outside this set would be cut apart.
for value in "$BUCKET" "$S3_APP_IDENTITY" "$S3_APP_ACCESS_KEY" "$S3_APP_SECRET_KEY"; do
    case "$value" in
        *[!A-Za-z0-9._-]*)
            echo "s3-init: bucket, identity and keys may hold only letters, digits, '.', '_' and '-'" >&2
            exit 2
            ;;
    esac
done

weed_shell() {
    timeout "$STEP_S" "$WEED" shell -master="$WEED_MASTER" -filer="$WEED_FILER"
}

# The s3 healthcheck passes once the S3 gateway answers; the filer behind it may need a
# moment more.
waited=0
until echo "s3.bucket.list" | weed_shell >/dev/null 2>&1; do
    waited=$((waited + 2))
    if [ "$waited" -ge "$WAIT_S" ]; then
        echo "s3-init: no answer from weed master $WEED_MASTER / filer $WEED_FILER in ${WAIT_S} s" >&2
        exit 1
    fi
    sleep 2
done

if echo "s3.bucket.list" | weed_shell | awk '{print $1}' | grep -qxF "$BUCKET"; then
    echo "s3-init: bucket $BUCKET exists"
else
    echo "s3.bucket.create -name $BUCKET" | weed_shell
fi

create="s3.configure -user=$S3_APP_IDENTITY -access_key=$S3_APP_ACCESS_KEY"
create="$create -secret_key=$S3_APP_SECRET_KEY -actions=Read,Write,List,Tagging"
create="$create -buckets=$BUCKET -apply"
if echo "s3.user.show -name $S3_APP_IDENTITY" | weed_shell >/dev/null 2>&1; then
    printf '%s\n%s\n' "s3.configure -user=$S3_APP_IDENTITY -delete -apply" "$create" \
        | weed_shell >/dev/null
else
    echo "$create" | weed_shell >/dev/null
fi

# What was made, without the secret (s3.user.show lists access keys only).
echo "s3.user.show -name $S3_APP_IDENTITY" | weed_shell
echo "s3-init: identity $S3_APP_IDENTITY may Read, Write, List, Tagging in bucket $BUCKET only"
