"""stormd's tables, split by domain, on one declarative Base.

Importing this package registers every model on `Base.metadata` (Alembic and tests use it).
"""

from stormd.schema.base import Base
from stormd.schema.marketing.automations import AutomationExecution, AutomationWorkflow
from stormd.schema.marketing.campaigns import CampaignTemplate, EmailCampaign
from stormd.schema.marketing.messages import (
    EmailEvent,
    Message,
    SmsLog,
    SmsProvider,
    WhatsAppMessage,
    WhatsAppTemplate,
)
from stormd.schema.marketing.predictions import ClvFit, CustomerPrediction, ProductNeighbour
from stormd.schema.marketing.recommendations import RecommendationEvent
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics, CustomerRFMSnapshot, RfmRun
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember, RescoreQueue
from stormd.schema.runtime.access import ApiKey, AuditEntry, IdempotentRequest
from stormd.schema.runtime.cron import CronRun
from stormd.schema.runtime.inbox import OutboundEvent, ProcessedEvent
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent, CartItem
from stormd.schema.shop.customers import Customer, DndNumber, ImportedCustomer
from stormd.schema.shop.orders import Order, OrderItem, OrderStatusChange
from stormd.schema.shop.products import Product
from stormd.schema.shop.promotions import AppliedPromotion, DiscountCode
from stormd.schema.shop.stores import Store

__all__ = [
    "ApiKey", "AppliedPromotion", "AuditEntry", "AutomationExecution", "AutomationWorkflow",
    "Base", "CampaignTemplate", "Cart", "CartAbandonmentEvent", "CartItem", "ClvFit", "CronRun",
    "Customer", "CustomerLifecycleMetrics", "CustomerPrediction", "CustomerRFMSnapshot",
    "CustomerSegment", "CustomerSegmentMember", "DiscountCode", "DndNumber", "EmailCampaign",
    "EmailEvent", "IdempotentRequest", "ImportedCustomer", "Message", "Order", "OrderItem",
    "OrderStatusChange", "OutboundEvent", "ProcessedEvent", "Product", "ProductNeighbour",
    "RecommendationEvent", "RescoreQueue", "RfmRun", "SmsLog", "SmsProvider", "Store", "Timer",
    "WhatsAppMessage", "WhatsAppTemplate",
]
