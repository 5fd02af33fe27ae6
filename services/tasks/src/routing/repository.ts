import { create } from "@bufbuild/protobuf";
import type { Event } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import type { AgentProfile, WorkspaceRepository } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import { type TaskRepository, TaskRepositorySchema } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import { placeOf } from "./match.js";

/**
 * The repository a task's run checks out, decided once when the event is routed so that every
 * attempt (and every worker) checks out the same one: a GitHub event's own repository (a pull
 * request by number, its head resolved by the worker when it checks out), else the profile's
 * mapping for the event's place, else the profile's repository. Undefined: an empty directory.
 */
export function resolveRepository(profile: AgentProfile, event: Event): TaskRepository | undefined {
  const workspace = profile.workspace;
  if (!workspace?.enabled) return undefined;
  const ref = event.subject?.ref;
  if (ref?.case === "github") {
    const { owner, repo, number, pullRequest, installationId } = ref.value;
    if (owner === "" || repo === "") return undefined;
    return create(TaskRepositorySchema, {
      owner,
      repo,
      pullRequestNumber: pullRequest ? number : 0n,
      installationId,
    });
  }
  const mapped = mappedRepository(workspace.repositories, event) ?? workspace.repository;
  return mapped && create(TaskRepositorySchema, { owner: mapped.owner, repo: mapped.repo, ref: mapped.ref });
}

/** A Sentry project may be listed as `organization/project` or by its slug alone; the full name wins. */
function mappedRepository(
  mappings: readonly { key: string; repository?: WorkspaceRepository }[],
  event: Event,
): WorkspaceRepository | undefined {
  if (mappings.length === 0) return undefined;
  const place = placeOf(event);
  if (place === "") return undefined;
  const keys = [place];
  if (event.subject?.ref.case === "sentry") keys.push(event.subject.ref.value.projectSlug);
  for (const key of keys) {
    const found = mappings.find((mapping) => mapping.key.toLowerCase() === key.toLowerCase());
    if (found?.repository) return found.repository;
  }
  return undefined;
}
