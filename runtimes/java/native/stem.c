/*
 * The stem cell's native half (protos/worker-protocol.md, "Stem cells"): what Java has no API for
 * when a worker started before its function takes the function over. Compiled once per host into
 * {cache_dir}/libfnhost-stem.so by the prepare step (Build.java, Prepare) and loaded by
 * fnhost.shim.Stem only in a cell; a spawned worker never loads it.
 *
 * Each function returns NULL on success, else a message naming the call and the OS error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <jni.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static jstring failure(JNIEnv *env, const char *what, int err) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
    return (*env)->NewStringUTF(env, msg);
}

/*
 * Drops every supplementary group, then sets gid and uid (real, effective, saved) and checks
 * them. glibc's set*id calls change every thread of the process (the JVM has a dozen), which a
 * raw syscall would not. Leaving uid 0 clears every capability. The kernel also marks the process
 * not dumpable when its uid changes; a spawned worker, exec'd after its uid was set, is dumpable,
 * so this one is made so again: same /proc ownership, ptrace and core dumps as a spawned one.
 */
JNIEXPORT jstring JNICALL Java_fnhost_shim_Stem_identity(JNIEnv *env, jclass cls, jint uid, jint gid) {
    (void) cls;
    char what[128];
    if (setgroups(0, NULL) != 0) {
        return failure(env, "setgroups(0, NULL)", errno);
    }
    if (setresgid((gid_t) gid, (gid_t) gid, (gid_t) gid) != 0) {
        snprintf(what, sizeof what, "setresgid(%d)", (int) gid);
        return failure(env, what, errno);
    }
    if (setresuid((uid_t) uid, (uid_t) uid, (uid_t) uid) != 0) {
        snprintf(what, sizeof what, "setresuid(%d)", (int) uid);
        return failure(env, what, errno);
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
        return failure(env, "getresuid/getresgid", errno);
    }
    if (ru != (uid_t) uid || eu != (uid_t) uid || su != (uid_t) uid || rg != (gid_t) gid || eg != (gid_t) gid
            || sg != (gid_t) gid || getgroups(0, NULL) != 0) {
        snprintf(what, sizeof what, "uid %d gid %d did not take: uids %u/%u/%u, gids %u/%u/%u, %d groups", (int) uid,
                 (int) gid, ru, eu, su, rg, eg, sg, getgroups(0, NULL));
        return (*env)->NewStringUTF(env, what);
    }
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
        return failure(env, "prctl(PR_SET_DUMPABLE)", errno);
    }
    return NULL;
}

/*
 * Makes the C library's environ exactly ENTRIES ("NAME=value" each, bytes as the daemon would have
 * passed them to execve), re-reads TZ, then rebuilds the JVM's own copy (System.getenv, and what
 * a ProcessBuilder starts from) from the new environ exactly as java.lang.ProcessEnvironment's
 * static initialiser built it, through the JDK's own Variable.valueOf and Value.valueOf. JNI is
 * not held to the module system's access checks, which spares java.base's internals --add-opens.
 */
JNIEXPORT jstring JNICALL Java_fnhost_shim_Stem_environment(JNIEnv *env, jclass cls, jobjectArray entries) {
    (void) cls;
    if (clearenv() != 0) {
        return failure(env, "clearenv", errno);
    }
    jsize n = (*env)->GetArrayLength(env, entries);
    for (jsize i = 0; i < n; i++) {
        jbyteArray e = (jbyteArray) (*env)->GetObjectArrayElement(env, entries, i);
        jsize len = (*env)->GetArrayLength(env, e);
        char *s = malloc((size_t) len + 1);
        if (s == NULL) {
            return failure(env, "malloc", ENOMEM);
        }
        (*env)->GetByteArrayRegion(env, e, 0, len, (jbyte *) s);
        s[len] = '\0';
        (*env)->DeleteLocalRef(env, e);
        char *eq = strchr(s, '=');
        int rc = -1, err = EINVAL;
        if (eq != NULL && eq != s && strlen(s) == (size_t) len) {
            *eq = '\0';
            rc = setenv(s, eq + 1, 1);
            err = errno;
        }
        if (rc != 0) {
            char what[160];
            snprintf(what, sizeof what, "setenv(%.100s)", s);
            free(s);
            return failure(env, what, err);
        }
        free(s);
    }
    tzset();

    jclass pe = (*env)->FindClass(env, "java/lang/ProcessEnvironment");
    jclass variable = pe == NULL ? NULL : (*env)->FindClass(env, "java/lang/ProcessEnvironment$Variable");
    jclass value = variable == NULL ? NULL : (*env)->FindClass(env, "java/lang/ProcessEnvironment$Value");
    jclass hashMap = value == NULL ? NULL : (*env)->FindClass(env, "java/util/HashMap");
    jmethodID environ = hashMap == NULL ? NULL : (*env)->GetStaticMethodID(env, pe, "environ", "()[[B");
    jfieldID field = environ == NULL ? NULL : (*env)->GetStaticFieldID(env, pe, "theEnvironment", "Ljava/util/HashMap;");
    jmethodID varOf = field == NULL ? NULL
            : (*env)->GetStaticMethodID(env, variable, "valueOf", "([B)Ljava/lang/ProcessEnvironment$Variable;");
    jmethodID valOf = varOf == NULL ? NULL
            : (*env)->GetStaticMethodID(env, value, "valueOf", "([B)Ljava/lang/ProcessEnvironment$Value;");
    jmethodID clear = valOf == NULL ? NULL : (*env)->GetMethodID(env, hashMap, "clear", "()V");
    jmethodID put = clear == NULL ? NULL
            : (*env)->GetMethodID(env, hashMap, "put", "(Ljava/lang/Object;Ljava/lang/Object;)Ljava/lang/Object;");
    if (put == NULL) {
        (*env)->ExceptionClear(env);
        return (*env)->NewStringUTF(env, "java.lang.ProcessEnvironment is not laid out as in JDK 17-24: cannot replace the JVM's copy of the environment");
    }
    jobject map = (*env)->GetStaticObjectField(env, pe, field);
    jobjectArray bytes = (jobjectArray) (*env)->CallStaticObjectMethod(env, pe, environ);
    if ((*env)->ExceptionCheck(env) || map == NULL || bytes == NULL) {
        (*env)->ExceptionClear(env);
        return (*env)->NewStringUTF(env, "java.lang.ProcessEnvironment.environ() failed");
    }
    // The same loop as ProcessEnvironment's static initialiser: a later duplicate loses.
    (*env)->CallVoidMethod(env, map, clear);
    for (jsize i = (*env)->GetArrayLength(env, bytes) - 1; i > 0 && !(*env)->ExceptionCheck(env); i -= 2) {
        jobject k = (*env)->GetObjectArrayElement(env, bytes, i - 1);
        jobject v = (*env)->GetObjectArrayElement(env, bytes, i);
        jobject var = (*env)->CallStaticObjectMethod(env, variable, varOf, k);
        jobject val = (*env)->ExceptionCheck(env) ? NULL : (*env)->CallStaticObjectMethod(env, value, valOf, v);
        if (!(*env)->ExceptionCheck(env)) {
            (*env)->DeleteLocalRef(env, (*env)->CallObjectMethod(env, map, put, var, val));
        }
        (*env)->DeleteLocalRef(env, k);
        (*env)->DeleteLocalRef(env, v);
        (*env)->DeleteLocalRef(env, var);
        (*env)->DeleteLocalRef(env, val);
    }
    if ((*env)->ExceptionCheck(env)) {
        (*env)->ExceptionClear(env);
        return (*env)->NewStringUTF(env, "rebuilding java.lang.ProcessEnvironment's map threw");
    }
    return NULL;
}

JNIEXPORT jstring JNICALL Java_fnhost_shim_Stem_chdir(JNIEnv *env, jclass cls, jbyteArray path) {
    (void) cls;
    jsize len = (*env)->GetArrayLength(env, path);
    char *p = malloc((size_t) len + 1);
    if (p == NULL) {
        return failure(env, "malloc", ENOMEM);
    }
    (*env)->GetByteArrayRegion(env, path, 0, len, (jbyte *) p);
    p[len] = '\0';
    int rc = strlen(p) == (size_t) len ? chdir(p) : -1;
    int err = rc == 0 ? 0 : strlen(p) == (size_t) len ? errno : EINVAL;
    char what[160];
    snprintf(what, sizeof what, "chdir(%.120s)", p);
    free(p);
    return rc == 0 ? NULL : failure(env, what, err);
}

/*
 * {pw_name, pw_dir} of UID, or null without a passwd entry: what the JVM reads at start for
 * user.name and user.home. Looked up after the uid changed, as a spawned worker's JVM does.
 */
JNIEXPORT jobjectArray JNICALL Java_fnhost_shim_Stem_user(JNIEnv *env, jclass cls, jint uid) {
    (void) cls;
    struct passwd *pw = getpwuid((uid_t) uid);
    if (pw == NULL) {
        return NULL;
    }
    jclass string = (*env)->FindClass(env, "java/lang/String");
    jobjectArray out = string == NULL ? NULL : (*env)->NewObjectArray(env, 2, string, NULL);
    if (out == NULL) {
        return NULL;
    }
    (*env)->SetObjectArrayElement(env, out, 0, (*env)->NewStringUTF(env, pw->pw_name));
    (*env)->SetObjectArrayElement(env, out, 1, (*env)->NewStringUTF(env, pw->pw_dir));
    return out;
}
