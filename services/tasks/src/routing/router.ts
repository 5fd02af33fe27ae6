import { create } from "@bufbuild/protobuf";
import type { Event } from "../../../../gen/hookmesh/events/v1/event_pb.js";
import { type AgentProfile, AgentProfileSchema, type Route } from "../../../../gen/hookmesh/tasks/v1/route_pb.js";
import type { TaskRepository } from "../../../../gen/hookmesh/tasks/v1/task_pb.js";
import type { JiraGroups } from "./jira-groups.js";
import type { LabelerPermissions } from "./labeler-permission.js";
import { type MatchOptions, matchRoute, needsJiraGroups, needsLabeler } from "./match.js";
import { renderPrompt } from "./prompt.js";
import { resolveRepository } from "./repository.js";
import type { RoutingRuleStore } from "./routing-rule-store.js";

export type RouteDecision =
  | {
      matched: true;
      route: Route;
      prompt: string;
      priority: number;
      profile: AgentProfile;
      /** 0 means the service default. */
      maxAttempts: number;
      /** What the run checks out; undefined for an empty directory. */
      repository?: TaskRepository | undefined;
    }
  | { matched: false; reason: string };

export type RouterOptions = MatchOptions;

/** Decides what an event becomes: which rule, which prompt, or why nothing. */
export class Router {
  constructor(
    private readonly store: RoutingRuleStore,
    private readonly options: RouterOptions,
    private readonly lookups: {
      labelers: Pick<LabelerPermissions, "standingOf">;
      jiraGroups: Pick<JiraGroups, "standingOf">;
    },
  ) {}

  async route(event: Event): Promise<RouteDecision> {
    const [decision] = await this.routeAll([event]);
    return decision!;
  }

  /** The decision for each event, in order, from one reading of the rules. */
  async routeAll(events: readonly Event[]): Promise<RouteDecision[]> {
    if (events.length === 0) return [];
    // Read for every batch rather than kept: a rule changed over RouteService on any replica
    // applies to the next event, as RouteService promises (the store answers from its cache
    // while the rules' version is unchanged).
    const routes = await this.store.list();
    return Promise.all(events.map((event) => this.decide(routes, event)));
  }

  private async decide(routes: Route[], event: Event): Promise<RouteDecision> {
    const { mention } = this.options;
    const [labeler, jiraGroups] = await Promise.all([
      needsLabeler(routes, event, mention) ? this.lookups.labelers.standingOf(event) : undefined,
      needsJiraGroups(routes, event, mention) ? this.lookups.jiraGroups.standingOf(event) : undefined,
    ]);
    const match = matchRoute(routes, event, this.options, {
      ...(labeler && { labeler }),
      ...(jiraGroups && { jiraGroups }),
    });
    if (!match.matched) return match;
    const { route } = match;
    const profile = route.profile ?? create(AgentProfileSchema);
    return {
      matched: true,
      route,
      prompt: renderPrompt(route, event, this.options.mention),
      priority: route.priority,
      profile,
      maxAttempts: route.maxAttempts,
      repository: resolveRepository(profile, event),
    };
  }
}
