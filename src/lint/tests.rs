//! Each check fires on a Dockerfile that has the problem and stays quiet on one that does not.

use super::*;

fn fired(text: &str, ctx: &ContextFacts) -> Vec<&'static str> {
    let df = Dockerfile::parse(text).expect("test Dockerfiles parse");
    lint(&df, text, ctx).into_iter().map(|f| f.check).collect()
}

fn has(text: &str, check: &str) -> bool {
    fired(text, &ContextFacts::default()).contains(&check)
}

/// A Dockerfile that passes every check.
const CLEAN: &str = "FROM node:20.11-slim AS build\n\
WORKDIR /app\n\
COPY package*.json ./\n\
RUN npm ci\n\
COPY . .\n\
FROM node:20.11-slim\n\
COPY --from=build /app /app\n\
USER node\n\
CMD [\"node\", \"/app/index.js\"]\n";

#[test]
fn a_clean_dockerfile_has_no_findings() {
    let ctx = ContextFacts {
        has_dockerignore: true,
        size: Some(1 << 30),
    };
    assert_eq!(fired(CLEAN, &ctx), Vec::<&str>::new());
}

#[test]
fn each_check_fires_on_its_problem_and_not_on_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        ("UnpinnedBaseImage", "FROM alpine\nUSER 1\n", "FROM alpine:3.19\nUSER 1\n"),
        ("UnpinnedBaseImage", "FROM alpine:latest\nUSER 1\n", "FROM alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\nUSER 1\n"),
        ("RootFinalStage", "FROM alpine:3.19\nCMD [\"sh\"]\n", "FROM alpine:3.19\nUSER app\n"),
        ("RootFinalStage", "FROM alpine:3.19\nUSER app\nUSER root\n", "FROM alpine:3.19\nUSER root\nUSER 1000\n"),
        ("CopyBeforeDependencyInstall", "FROM node:20-slim\nCOPY . .\nRUN npm install\nUSER 1\n", "FROM node:20-slim\nCOPY package*.json ./\nRUN npm install\nCOPY . .\nUSER 1\n"),
        ("CopyBeforeDependencyInstall", "FROM python:3.12-slim\nCOPY . /src\nRUN pip install -r /src/requirements.txt\nUSER 1\n", "FROM python:3.12-slim\nCOPY requirements.txt /src/\nRUN pip install -r /src/requirements.txt\nUSER 1\n"),
        ("LargeBaseImage", "FROM python:3.12\nUSER 1\n", "FROM python:3.12-slim\nUSER 1\n"),
        ("AddInsteadOfCopy", "FROM alpine:3.19\nADD app.conf /etc/\nUSER 1\n", "FROM alpine:3.19\nADD rootfs.tar.gz /\nUSER 1\n"),
        ("AptGetNoRecommends", "FROM debian:12\nRUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\nUSER 1\n", "FROM debian:12\nRUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\nUSER 1\n"),
        ("AptGetListsNotCleaned", "FROM debian:12\nRUN apt-get update && apt-get install -y --no-install-recommends curl\nUSER 1\n", "FROM debian:12\nRUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\nUSER 1\n"),
        ("AptGetUpgrade", "FROM debian:12\nRUN apt-get update && apt-get upgrade -y\nUSER 1\n", "FROM debian:12\nRUN apt-get update\nUSER 1\n"),
        ("JSONArgsRecommended", "FROM alpine:3.19\nUSER 1\nCMD node index.js\n", "FROM alpine:3.19\nUSER 1\nCMD [\"node\", \"index.js\"]\n"),
        ("JSONArgsRecommended", "FROM alpine:3.19\nUSER 1\nENTRYPOINT /run.sh\n", "FROM alpine:3.19\nUSER 1\nENTRYPOINT [\"/run.sh\"]\n"),
        ("ExposeInvalidFormat", "FROM alpine:3.19\nEXPOSE 80000\nUSER 1\n", "FROM alpine:3.19\nEXPOSE 8080/tcp 53/udp\nUSER 1\n"),
        ("WorkdirRelativePath", "FROM alpine:3.19\nWORKDIR app\nUSER 1\n", "FROM alpine:3.19\nWORKDIR /app\nUSER 1\n"),
        ("UnusedStage", "FROM alpine:3.19 AS tools\nFROM alpine:3.19\nUSER 1\n", "FROM alpine:3.19 AS tools\nFROM alpine:3.19\nCOPY --from=tools /bin/sh /x\nUSER 1\n"),
        ("UndefinedArgInFrom", "FROM alpine:${VERSION}\nUSER 1\n", "ARG VERSION=3.19\nFROM alpine:${VERSION}\nUSER 1\n"),
        ("ArgUsedBeforeDeclared", "FROM alpine:3.19\nWORKDIR /opt/$APP\nARG APP=web\nUSER 1\n", "FROM alpine:3.19\nARG APP=web\nWORKDIR /opt/$APP\nUSER 1\n"),
        ("SecretsUsedInArgOrEnv", "FROM alpine:3.19\nARG GITHUB_TOKEN\nUSER 1\n", "FROM alpine:3.19\nARG GITHUB_USER\nUSER 1\n"),
        ("SecretsUsedInArgOrEnv", "FROM alpine:3.19\nENV DB_PASSWORD=x\nUSER 1\n", "FROM alpine:3.19\nENV DB_HOST=x\nUSER 1\n"),
        ("StageNameCasing", "FROM alpine:3.19 AS Build\nFROM alpine:3.19\nCOPY --from=build /x /x\nUSER 1\n", "FROM alpine:3.19 AS build\nFROM alpine:3.19\nCOPY --from=build /x /x\nUSER 1\n"),
        ("MaintainerDeprecated", "FROM alpine:3.19\nMAINTAINER me\nUSER 1\n", "FROM alpine:3.19\nLABEL org.opencontainers.image.authors=me\nUSER 1\n"),
    ];
    let mut covered: Vec<&str> = Vec::new();
    for (check, bad, good) in cases {
        assert!(has(bad, check), "{check} should fire on:\n{bad}");
        assert!(!has(good, check), "{check} should not fire on:\n{good}");
        covered.push(check);
    }
    // The context check, both ways.
    let big = ContextFacts {
        has_dockerignore: false,
        size: Some(LARGE_CONTEXT),
    };
    assert!(fired("FROM alpine:3.19\nUSER 1\n", &big).contains(&"MissingDockerignore"));
    let small = ContextFacts {
        has_dockerignore: false,
        size: Some(1 << 20),
    };
    assert!(!fired("FROM alpine:3.19\nUSER 1\n", &small).contains(&"MissingDockerignore"));
    covered.push("MissingDockerignore");
    for c in CHECKS {
        assert!(covered.contains(c), "{c} has no test case");
    }
}

#[test]
fn check_directive_skips_checks() {
    let text = "# check=skip=UnpinnedBaseImage,RootFinalStage\nFROM alpine\n";
    assert_eq!(fired(text, &ContextFacts::default()), Vec::<&str>::new());
    let text = "# check=skip=all\nFROM alpine\nCMD run\n";
    assert_eq!(fired(text, &ContextFacts::default()), Vec::<&str>::new());
}

#[test]
fn findings_name_the_line_and_the_fix() {
    let text = "FROM alpine:3.19\nRUN echo hi\nCMD echo hi\n";
    let df = Dockerfile::parse(text).unwrap();
    let f = lint(&df, text, &ContextFacts::default());
    let json = f.iter().find(|f| f.check == "JSONArgsRecommended").unwrap();
    assert_eq!(json.line, 3);
    assert!(json.fix.contains("CMD [\"echo\", \"hi\"]"), "{}", json.fix);
}

#[test]
fn fix_rewrites_only_the_mechanical_cases() {
    let text = "FROM alpine:3.19\nADD app.conf /etc/\nADD --chown=1:1 x /x\nUSER 1\nCMD node index.js\nENTRYPOINT run.sh && more\n";
    let df = Dockerfile::parse(text).unwrap();
    let f = lint(&df, text, &ContextFacts::default());
    let fx = fixes(&df, text, &f);
    assert_eq!(
        fx,
        vec![
            (
                2,
                "ADD app.conf /etc/".to_string(),
                "COPY app.conf /etc/".to_string()
            ),
            (
                3,
                "ADD --chown=1:1 x /x".to_string(),
                "COPY --chown=1:1 x /x".to_string()
            ),
            (
                5,
                "CMD node index.js".to_string(),
                "CMD [\"node\", \"index.js\"]".to_string()
            ),
        ],
        "the ENTRYPOINT with && needs judgement"
    );
}
